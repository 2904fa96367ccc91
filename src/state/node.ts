/** Node (v1) validation: the node's name, zone, addresses and pod CIDRs. */
import { InvalidObjectError } from "./errors.ts";
import { parseCIDR, parseIP } from "./ip.ts";
import type { NodeSpec } from "./types.ts";
import { labels, list, obj, str } from "./_object.ts";

export const ZONE_LABEL = "topology.kubernetes.io/zone";

export function parseNode(o: unknown): NodeSpec {
  const root = obj(o);
  const meta = obj(root["metadata"]);
  const name = str(meta["name"]) ?? "";
  const fail = (reason: string): never => {
    throw new InvalidObjectError("Node", "", name || "<unnamed>", reason);
  };
  if (!name) fail("metadata.name is missing");
  const lbls = labels(meta);
  const addresses: string[] = [];
  const byType: Record<string, string[]> = {};
  for (const ra of list(obj(root["status"])["addresses"])) {
    const a = obj(ra);
    const type = str(a["type"]) ?? "";
    if (type !== "InternalIP" && type !== "ExternalIP") continue;
    const ip = parseIP(str(a["address"]) ?? "");
    if (!ip) return fail(`status.addresses: ${JSON.stringify(a["address"])} is not an IP address`);
    if (!addresses.includes(ip.text)) addresses.push(ip.text);
    (byType[type] ??= []).push(ip.text);
  }
  // Primary IPs as kubelet reports them: the first InternalIP of each family,
  // else the first ExternalIP of that family.
  const primaryIPs: string[] = [];
  for (const family of [4, 6]) {
    const pick = [...(byType["InternalIP"] ?? []), ...(byType["ExternalIP"] ?? [])]
      .find((a) => parseIP(a)?.family === family);
    if (pick) primaryIPs.push(pick);
  }
  const spec = obj(root["spec"]);
  const rawCIDRs = list(spec["podCIDRs"]).length > 0
    ? list(spec["podCIDRs"])
    : spec["podCIDR"]
    ? [spec["podCIDR"]]
    : [];
  const podCIDRs = rawCIDRs.map((raw) => {
    const c = parseCIDR(String(raw));
    return c ? c.text : fail(`spec.podCIDRs: ${JSON.stringify(raw)} is not a CIDR`);
  });
  // A node on its way out: /healthz then fails so load balancers drain it
  // (kube-proxy checks the same deletion timestamp and autoscaler taint).
  const taints = list(spec["taints"]).map((t) => str(obj(t)["key"]));
  const deleting = !!meta["deletionTimestamp"] || taints.includes("ToBeDeletedByClusterAutoscaler");
  return {
    name,
    zone: lbls[ZONE_LABEL] ?? "",
    addresses,
    primaryIPs,
    podCIDRs,
    labels: lbls,
    deleting,
  };
}
