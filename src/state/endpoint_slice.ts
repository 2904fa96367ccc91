/** EndpointSlice (discovery.k8s.io/v1) validation. */
import { InvalidObjectError } from "./errors.ts";
import { parseIP } from "./ip.ts";
import { DNS1123_LABEL, objectName, parseProtocol } from "./service.ts";
import type { EndpointSlicePort, EndpointSliceSpec, EndpointSpec } from "./types.ts";
import { intIn, labels, list, obj, str } from "./_object.ts";
import { EndpointList } from "./endpoint_list.ts";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
/** Slices of headless services carry this label; kube-proxy does not watch them. */
export const HEADLESS_LABEL = "service.kubernetes.io/headless";

export type EndpointSliceResult =
  | { kind: "slice"; spec: EndpointSliceSpec }
  | { kind: "ignored"; reason: string };

/** Shared by every endpoint without hints (most of them): one array, not 100k. */
const NO_HINTS: string[] = [];

function hintNames(v: unknown): string[] {
  const names = list(v).map((h) => str(obj(h)["name"])).filter((n): n is string => !!n);
  return names.length ? names : NO_HINTS;
}

export function parseEndpointSlice(o: unknown): EndpointSliceResult {
  const { namespace, name } = objectName(o);
  const fail = (reason: string): never => {
    throw new InvalidObjectError("EndpointSlice", namespace, name || "<unnamed>", reason);
  };
  if (!name) fail("metadata.name is missing");
  if (!DNS1123_LABEL.test(namespace)) {
    fail(`metadata.namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  const root = obj(o);
  const lbls = labels(obj(root["metadata"]));
  const service = lbls[SERVICE_NAME_LABEL];
  // Slices not tied to a service (custom controllers) are not ours to program.
  if (!service) return { kind: "ignored", reason: `no ${SERVICE_NAME_LABEL} label` };
  if (HEADLESS_LABEL in lbls) return { kind: "ignored", reason: "headless service" };
  const addressType = str(root["addressType"]);
  if (addressType === "FQDN") return { kind: "ignored", reason: "addressType FQDN" };
  if (addressType !== "IPv4" && addressType !== "IPv6") {
    return fail(`unknown addressType ${JSON.stringify(addressType)}`);
  }
  const family = addressType === "IPv4" ? 4 : 6;

  const ports: EndpointSlicePort[] = [];
  for (const [i, rp] of list(root["ports"]).entries()) {
    const p = obj(rp);
    const protocol = parseProtocol(p["protocol"]);
    if (!protocol) return fail(`ports[${i}]: unknown protocol ${JSON.stringify(p["protocol"])}`);
    // A nil port means "no port": that port gets no endpoints from this slice.
    if (p["port"] === undefined || p["port"] === null) continue;
    const port = intIn(p["port"], 1, 65535);
    if (port === undefined) {
      return fail(`ports[${i}]: port ${JSON.stringify(p["port"])} is out of range 1-65535`);
    }
    ports.push({ name: str(p["name"]) ?? "", protocol, port });
  }

  const endpoints: EndpointSpec[] = [];
  for (const [i, re] of list(root["endpoints"]).entries()) {
    const e = obj(re);
    const addrs = list(e["addresses"]);
    if (addrs.length === 0) return fail(`endpoints[${i}]: no addresses`);
    // kube-proxy uses the first address only (the API allows exactly one).
    const ip = parseIP(String(addrs[0]));
    if (!ip) return fail(`endpoints[${i}]: ${JSON.stringify(addrs[0])} is not an IP address`);
    if (ip.family !== family) {
      return fail(`endpoints[${i}]: ${ip.text} is not an ${addressType} address`);
    }
    const c = obj(e["conditions"]);
    // API semantics: ready and serving unset mean "unknown, assume true";
    // terminating unset means false.
    const ready = c["ready"] !== false;
    const serving = c["serving"] === undefined || c["serving"] === null
      ? ready
      : c["serving"] !== false;
    const hints = obj(e["hints"]);
    endpoints.push({
      address: ip.text,
      ready,
      serving,
      terminating: c["terminating"] === true,
      nodeName: str(e["nodeName"]) ?? "",
      zoneHints: hintNames(hints["forZones"]),
      nodeHints: hintNames(hints["forNodes"]),
    });
  }
  return {
    kind: "slice",
    spec: {
      namespace,
      name,
      id: `${namespace}/${name}`,
      serviceId: `${namespace}/${service}`,
      family,
      ports,
      endpoints: new EndpointList(endpoints),
    },
  };
}
