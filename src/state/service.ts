/** Service (v1) validation: a ServiceSpec, "ignored", or an InvalidObjectError. */
import { InvalidObjectError } from "./errors.ts";
import { parseCIDR, parseIP } from "./ip.ts";
import type { Protocol, ServicePortSpec, ServiceSpec } from "./types.ts";
import { intIn, labels, list, type Obj, obj, str } from "./_object.ts";

/** Services with this label belong to another proxy; kube-proxy ignores them. */
export const SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name";
export const DEFAULT_AFFINITY_SECONDS = 10800;
const MAX_AFFINITY_SECONDS = 86400;

export type ServiceResult =
  | { kind: "service"; spec: ServiceSpec }
  | { kind: "ignored"; reason: string };

export const DNS1123_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^(?=.{1,63}$)[a-z]([-a-z0-9]*[a-z0-9])?$/;
// IANA service name: what a named port may be called (RFC 6335).
const IANA_SVC_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]?$/;

/**
 * One empty list for every service without external IPs, LB IPs or source
 * ranges (most of them), instead of three arrays each; frozen, so that no
 * code can change the one through another.
 */
const NONE = Object.freeze([]) as unknown as string[];

function orNone(list: string[]): string[] {
  return list.length === 0 ? NONE : list;
}

const PROTOCOLS: ReadonlySet<string> = new Set(["TCP", "UDP", "SCTP"]);

export function parseProtocol(v: unknown): Protocol | undefined {
  if (v === undefined || v === null) return "TCP";
  return typeof v === "string" && PROTOCOLS.has(v) ? v as Protocol : undefined;
}

export function objectName(o: unknown): { namespace: string; name: string } {
  const meta = obj(obj(o)["metadata"]);
  return { namespace: str(meta["namespace"]) ?? "default", name: str(meta["name"]) ?? "" };
}

/**
 * Validates a Service. Throws InvalidObjectError naming the service and the
 * first problem found; returns "ignored" for services kube-proxy does not
 * program (headless, ExternalName, another proxy's).
 */
export function parseService(o: unknown): ServiceResult {
  const { namespace, name } = objectName(o);
  const fail = (reason: string): never => {
    throw new InvalidObjectError("Service", namespace, name || "<unnamed>", reason);
  };
  if (!name) fail("metadata.name is missing");
  // Names end up in nftables chain names (inside JSON strings); the API server
  // enforces these formats, manifests on disk may not.
  if (!DNS1035_LABEL.test(name)) {
    fail(`metadata.name ${JSON.stringify(name)} is not a DNS-1035 label`);
  }
  if (!DNS1123_LABEL.test(namespace)) {
    fail(`metadata.namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  const meta = obj(obj(o)["metadata"]);
  if (SERVICE_PROXY_NAME_LABEL in labels(meta)) {
    return { kind: "ignored", reason: `labelled ${SERVICE_PROXY_NAME_LABEL}` };
  }
  const spec: Obj = obj(obj(o)["spec"]);
  const type = str(spec["type"]) ?? "ClusterIP";
  if (type === "ExternalName") return { kind: "ignored", reason: "type ExternalName" };
  if (!["ClusterIP", "NodePort", "LoadBalancer"].includes(type)) {
    fail(`unknown type ${JSON.stringify(type)}`);
  }

  const rawIPs = list(spec["clusterIPs"]).length > 0
    ? list(spec["clusterIPs"])
    : spec["clusterIP"] !== undefined
    ? [spec["clusterIP"]]
    : [];
  if (rawIPs.length === 0) fail("spec.clusterIP is missing");
  if (rawIPs.some((ip) => ip === "None" || ip === "")) {
    return { kind: "ignored", reason: "headless (clusterIP None)" };
  }
  const clusterIPs: string[] = [];
  const families = new Set<number>();
  for (const raw of rawIPs) {
    const ip = parseIP(String(raw));
    if (!ip) return fail(`spec.clusterIPs: ${JSON.stringify(raw)} is not an IP address`);
    if (families.has(ip.family)) fail(`spec.clusterIPs: two IPv${ip.family} addresses`);
    families.add(ip.family);
    clusterIPs.push(ip.text);
  }

  const externalIPs = list(spec["externalIPs"]).map((raw) => {
    const ip = parseIP(String(raw));
    return ip ? ip.text : fail(`spec.externalIPs: ${JSON.stringify(raw)} is not an IP address`);
  });

  // VIP-mode LB ingress IPs; "Proxy" mode LBs deliver to the node ports and
  // must not be captured on the node (KEP-1860), hostnames are not ours.
  const loadBalancerIPs: string[] = [];
  for (const ing of list(obj(obj(obj(o)["status"])["loadBalancer"])["ingress"])) {
    const ingress = obj(ing);
    const rawIP = str(ingress["ip"]);
    if (!rawIP) continue;
    if (str(ingress["ipMode"]) === "Proxy") continue;
    const ip = parseIP(rawIP);
    if (!ip) fail(`status.loadBalancer.ingress: ${JSON.stringify(rawIP)} is not an IP address`);
    else if (!loadBalancerIPs.includes(ip.text)) loadBalancerIPs.push(ip.text);
  }

  const loadBalancerSourceRanges = list(spec["loadBalancerSourceRanges"]).map((raw) => {
    const c = parseCIDR(String(raw));
    return c ? c.text : fail(`spec.loadBalancerSourceRanges: ${JSON.stringify(raw)} is not a CIDR`);
  });

  const ports: ServicePortSpec[] = [];
  const rawPorts = list(spec["ports"]);
  if (rawPorts.length === 0) fail("spec.ports is empty");
  const seen = new Set<string>();
  const seenNames = new Set<string>();
  const seenNodePorts = new Set<string>();
  for (const [i, rp] of rawPorts.entries()) {
    const p = obj(rp);
    const where = `spec.ports[${i}]`;
    const protocol = parseProtocol(p["protocol"]);
    if (!protocol) return fail(`${where}: unknown protocol ${JSON.stringify(p["protocol"])}`);
    const port = intIn(p["port"], 1, 65535);
    if (port === undefined) {
      return fail(`${where}: port ${JSON.stringify(p["port"])} is out of range 1-65535`);
    }
    const nodePortRaw = p["nodePort"];
    const nodePort = nodePortRaw === undefined || nodePortRaw === null
      ? 0
      : intIn(nodePortRaw, 0, 65535);
    if (nodePort === undefined) {
      return fail(`${where}: nodePort ${JSON.stringify(nodePortRaw)} is out of range`);
    }
    const portName = str(p["name"]) ?? "";
    if (portName !== "" && !IANA_SVC_NAME.test(portName)) {
      fail(`${where}: name ${JSON.stringify(portName)} is not a valid port name`);
    }
    if (seenNames.has(portName)) fail(`${where}: duplicate port name ${JSON.stringify(portName)}`);
    seenNames.add(portName);
    const key = `${protocol}/${port}`;
    if (seen.has(key)) fail(`${where}: duplicate port ${key}`);
    seen.add(key);
    if (nodePort > 0 && type !== "ClusterIP") {
      const npKey = `${protocol}/${nodePort}`;
      if (seenNodePorts.has(npKey)) fail(`${where}: duplicate nodePort ${npKey}`);
      seenNodePorts.add(npKey);
    }
    // A node port only exists for NodePort and LoadBalancer services.
    ports.push({ name: portName, protocol, port, nodePort: type === "ClusterIP" ? 0 : nodePort });
  }

  // kube-proxy's ExternallyAccessible: only then does the external policy apply.
  const externallyAccessible = type !== "ClusterIP" || externalIPs.length > 0;
  const etp = str(spec["externalTrafficPolicy"]) ?? "Cluster";
  if (!["Cluster", "Local"].includes(etp)) {
    fail(`unknown externalTrafficPolicy ${JSON.stringify(etp)}`);
  }
  const itp = str(spec["internalTrafficPolicy"]) ?? "Cluster";
  if (!["Cluster", "Local"].includes(itp)) {
    fail(`unknown internalTrafficPolicy ${JSON.stringify(itp)}`);
  }

  let affinitySeconds = 0;
  const affinity = str(spec["sessionAffinity"]) ?? "None";
  if (affinity === "ClientIP") {
    const raw = obj(obj(spec["sessionAffinityConfig"])["clientIP"])["timeoutSeconds"];
    const t = raw === undefined || raw === null
      ? DEFAULT_AFFINITY_SECONDS
      : intIn(raw, 1, MAX_AFFINITY_SECONDS);
    if (t === undefined) {
      return fail(
        `sessionAffinityConfig.clientIP.timeoutSeconds ${
          JSON.stringify(raw)
        } is out of range 1-86400`,
      );
    }
    affinitySeconds = t;
  } else if (affinity !== "None") {
    fail(`unknown sessionAffinity ${JSON.stringify(affinity)}`);
  }

  const externalTrafficLocal = externallyAccessible && etp === "Local";
  const lbIPs = type === "LoadBalancer"
    ? loadBalancerIPs.filter((ip) => !clusterIPs.includes(ip))
    : [];
  const hc = intIn(spec["healthCheckNodePort"], 0, 65535) ?? 0;
  return {
    kind: "service",
    spec: {
      namespace,
      name,
      id: `${namespace}/${name}`,
      clusterIPs,
      // One address, one role: an LB IP listed in externalIPs too is an LB IP
      // (its source ranges apply), and the ClusterIP is never "external".
      externalIPs: orNone(
        [...new Set(externalIPs)].filter((ip) => !clusterIPs.includes(ip) && !lbIPs.includes(ip)),
      ),
      loadBalancerIPs: orNone(lbIPs),
      loadBalancerSourceRanges: orNone([...new Set(loadBalancerSourceRanges)]),
      externalTrafficLocal,
      internalTrafficLocal: itp === "Local",
      affinitySeconds,
      healthCheckNodePort: externalTrafficLocal && type === "LoadBalancer" ? hc : 0,
      ports,
    },
  };
}
