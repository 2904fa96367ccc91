/**
 * Puts manifest objects into a ClusterState: Services, EndpointSlices, the
 * Node, ServiceCIDRs. Each invalid object is skipped with one warning that
 * names it; every other object is still used.
 */
import {
  ClusterState,
  InvalidObjectError,
  type NodeSpec,
  parseCIDR,
  parseEndpointSlice,
  parseNode,
  parseService,
} from "../state/mod.ts";
import type { ManifestObject } from "./manifests.ts";

export interface Fed {
  state: ClusterState;
  node: NodeSpec | null;
  /** CIDRs from ServiceCIDR objects (networking.k8s.io). */
  serviceCIDRs: string[];
  warnings: string[];
  /** Objects ignored on purpose (headless, ExternalName, other kinds), for --v. */
  ignored: string[];
}

function isKind(o: ManifestObject, kind: string, groups: string[]): boolean {
  return o.kind === kind && groups.some((g) => o.apiVersion === g);
}

/** Which Node object is this node: by name, or the only one given. */
export function chooseNode(objects: readonly ManifestObject[], nodeName: string): string {
  if (nodeName) return nodeName;
  const names = objects.filter((o) => isKind(o, "Node", ["v1"]))
    .map((o) => (o.object["metadata"] as Record<string, unknown> | undefined)?.["name"])
    .filter((n): n is string => typeof n === "string");
  if (names.length === 1) return names[0]!;
  if (names.length > 1) {
    throw new Error(
      `Cannot tell which node to plan for: the manifests hold ${names.length} Nodes (${
        names.join(", ")
      }); pass --hostname-override`,
    );
  }
  return "";
}

export function feedState(objects: readonly ManifestObject[], nodeName: string): Fed {
  const state = new ClusterState(nodeName);
  const fed: Fed = { state, node: null, serviceCIDRs: [], warnings: [], ignored: [] };
  const warn = (o: ManifestObject, e: unknown) => {
    if (e instanceof InvalidObjectError) fed.warnings.push(`${e.message} (${o.origin})`);
    else throw e;
  };
  for (const o of objects) {
    try {
      if (isKind(o, "Service", ["v1"])) {
        const r = parseService(o.object);
        if (r.kind === "service") state.upsertService(r.spec);
        else fed.ignored.push(`${o.origin}: Service ignored: ${r.reason}`);
      } else if (isKind(o, "EndpointSlice", ["discovery.k8s.io/v1"])) {
        const r = parseEndpointSlice(o.object);
        if (r.kind === "slice") state.upsertSlice(r.spec);
        else fed.ignored.push(`${o.origin}: EndpointSlice ignored: ${r.reason}`);
      } else if (isKind(o, "Node", ["v1"])) {
        const node = parseNode(o.object);
        if (node.name === nodeName) {
          fed.node = node;
          state.setNode(node);
        }
      } else if (isKind(o, "ServiceCIDR", ["networking.k8s.io/v1", "networking.k8s.io/v1beta1"])) {
        const spec = (o.object["spec"] ?? {}) as Record<string, unknown>;
        const name = String(
          (o.object["metadata"] as Record<string, unknown> | undefined)?.["name"] ?? "",
        );
        for (const c of Array.isArray(spec["cidrs"]) ? spec["cidrs"] : []) {
          const parsed = parseCIDR(String(c));
          if (!parsed) {
            throw new InvalidObjectError(
              "ServiceCIDR",
              "",
              name,
              `${JSON.stringify(c)} is not a CIDR`,
            );
          }
          fed.serviceCIDRs.push(parsed.text);
        }
      } else {
        fed.ignored.push(`${o.origin}: ${o.kind || "object without kind"} is not used by kpx`);
      }
    } catch (e) {
      warn(o, e);
    }
  }
  return fed;
}
