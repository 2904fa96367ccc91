/** IPVS mode's part of the planner context. */
import { cidrContains, type NodeSpec, parseCIDR, parseIP } from "../state/mod.ts";
import type { IPVSContext } from "../planner/mod.ts";
import type { Config } from "./config.ts";

/**
 * Node ports need explicit virtual services, one per node address (nftables
 * mode matches "any local address" instead). The addresses are the Node's
 * InternalIPs and ExternalIPs, filtered by nodePortAddresses when it is set
 * (`nodePortAddresses` as planContext() resolved it: CIDRs, or null for all).
 * Pure; sorted so that the same node gives the same context.
 */
export function ipvsNodeIPs(
  node: NodeSpec | null,
  nodePortAddresses: readonly string[] | null,
): string[] {
  const cidrs = nodePortAddresses?.map((c) => parseCIDR(c)).filter((c) => c !== null) ?? null;
  const out = (node?.addresses ?? []).filter((a) => {
    if (cidrs === null) return true;
    const ip = parseIP(a);
    return ip !== null && cidrs.some((c) => cidrContains(c, ip));
  });
  return [...new Set(out)].sort();
}

export function ipvsContext(
  config: Config,
  node: NodeSpec | null,
  nodePortAddresses: readonly string[] | null,
): IPVSContext {
  return { scheduler: config.ipvs.scheduler, nodeIPs: ipvsNodeIPs(node, nodePortAddresses) };
}
