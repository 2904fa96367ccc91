/** Joins a service with its EndpointSlices into the planner's Service. */
import { cidrContains, collapseCIDRs, hostCIDR, parseCIDR, parseIP } from "./ip.ts";
import type { Endpoint, EndpointSliceSpec, Service, ServiceSpec } from "./types.ts";

/**
 * Endpoints of each service port: slice ports are matched to service ports by
 * name and protocol (the EndpointSlice controller has already resolved
 * targetPort, named or not). A service port with no matching slice port gets
 * no endpoints. Duplicates across slices are merged on address and port;
 * as in kube-proxy, a copy that is on this node wins.
 */
export function joinService(
  spec: ServiceSpec,
  slices: readonly EndpointSliceSpec[],
  nodeName: string,
  nodeIPs: readonly string[],
): Service {
  const ordered = [...slices].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const ports = spec.ports.map((sp) => {
    const byKey = new Map<string, Endpoint>();
    for (const slice of ordered) {
      const port = slice.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
      if (!port) continue;
      const eps = slice.endpoints;
      for (let i = 0; i < eps.length; i++) {
        const key = `${eps.address(i)}|${port.port}`;
        const node = eps.nodeName(i);
        const local = node !== "" && node === nodeName;
        if (byKey.has(key) && !local) continue;
        byKey.set(key, eps.endpoint(i, port.port));
      }
    }
    // Sorted so the plan, and each endpoint's slot, depend only on the set.
    const endpoints = [...byKey.values()].sort((a, b) =>
      a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port
    );
    return { ...sp, endpoints };
  });
  const { ports: _ports, loadBalancerSourceRanges: ranges, ...rest } = spec;
  return { ...rest, ports, firewallSourceRanges: firewallRanges(spec, ranges, nodeIPs) };
}

function firewallRanges(spec: ServiceSpec, ranges: readonly string[], nodeIPs: readonly string[]) {
  if (ranges.length === 0) return [];
  const parsed = ranges.map((r) => parseCIDR(r)!);
  const ips = nodeIPs.map((a) => parseIP(a)).filter((a) => a !== null);
  const allowFromNode = parsed.some((r) => ips.some((ip) => cidrContains(r, ip)));
  const extra: string[] = [];
  if (allowFromNode) {
    for (const lb of spec.loadBalancerIPs) {
      const ip = parseIP(lb)!;
      // Only in a family that has ranges: elsewhere the LB IP stays unrestricted.
      if (parsed.some((r) => r.family === ip.family)) extra.push(hostCIDR(ip));
    }
  }
  return collapseCIDRs([...ranges, ...extra]);
}
