/** The planner's view of the configuration, given the Node kpx runs on. */
import { collapseCIDRs, hostCIDR, type NodeSpec, parseIP } from "../state/mod.ts";
import type { LocalDetection, PlanContext } from "../planner/mod.ts";
import type { Config } from "./config.ts";
import { ipvsContext } from "./ipvs_context.ts";

export interface ContextNotes {
  /** Facts worth one log line (e.g. "no local detection for IPv6"). */
  notes: string[];
}

export function planContext(
  config: Config,
  nodeName: string,
  node: NodeSpec | null,
): PlanContext & ContextNotes {
  const notes: string[] = [];
  let localDetection: LocalDetection;
  switch (config.detectLocalMode) {
    case "ClusterCIDR":
      localDetection = config.clusterCIDRs.length > 0
        ? { mode: "CIDR", cidrs: collapseCIDRs(config.clusterCIDRs) }
        : { mode: "None" };
      if (config.clusterCIDRs.length === 0) {
        notes.push(
          "clusterCIDR is not set: traffic from outside the cluster to ClusterIPs is not masqueraded",
        );
      }
      break;
    case "NodeCIDR":
      localDetection = node && node.podCIDRs.length > 0
        ? { mode: "CIDR", cidrs: collapseCIDRs(node.podCIDRs) }
        : { mode: "None" };
      if (!node || node.podCIDRs.length === 0) {
        notes.push(`node ${nodeName} has no podCIDRs: no local traffic detection`);
      }
      break;
    case "BridgeInterface":
      localDetection = { mode: "BridgeInterface", interfaceName: config.bridgeInterface };
      break;
    case "InterfaceNamePrefix":
      localDetection = { mode: "InterfaceNamePrefix", interfacePrefix: config.interfaceNamePrefix };
      break;
  }
  let nodePortAddresses: string[] | null = null;
  if (config.nodePortAddresses.length > 0) {
    const out: string[] = [];
    for (const a of config.nodePortAddresses) {
      if (a !== "primary") {
        out.push(a);
        continue;
      }
      for (const ip of node?.primaryIPs ?? []) out.push(hostCIDR(parseIP(ip)!));
      if (!node || node.primaryIPs.length === 0) {
        notes.push(`nodePortAddresses "primary": node ${nodeName} has no addresses yet`);
      }
    }
    nodePortAddresses = collapseCIDRs(out);
  }
  return {
    nodeName,
    nodeZone: node?.zone ?? "",
    masqueradeBit: config.masqueradeBit,
    masqueradeAll: config.masqueradeAll,
    dropInvalid: !config.conntrack.tcpBeLiberal,
    localDetection,
    nodePortAddresses,
    serviceCIDRs: collapseCIDRs(config.serviceCIDRs),
    ...(config.mode === "ipvs" ? { ipvs: ipvsContext(config, node, nodePortAddresses) } : {}),
    notes,
  };
}

/** The node name kpx acts as: hostnameOverride, else the host name, lowercased. */
export function resolveNodeName(config: Config, hostname: string): string {
  return (config.hostnameOverride || hostname).trim().toLowerCase();
}
