/**
 * Words for a trace: what the destination is (from the planned Services), which of kpx's
 * chains and maps the probes went through (from nftables trace events), and why the source was
 * or was not masqueraded. Pure functions over data, so they are tested without a kernel.
 *
 * Chain and map names are kpx's nftables layout (wasm/assembly/names.ts, layout.ts).
 * @module
 */

import type { NodeSpec, Service } from "../state/mod.ts";
import type { Protocol } from "./probe_types.ts";
import type { TraceEvent } from "./trace_events.ts";

const KPX_TABLE = "kpx";
const MASQUERADE_MARK_SET = /meta mark set meta mark \|/;

export interface Destination {
  ip: string;
  port: number;
  protocol: Protocol;
}

export function formatDestination(d: Destination): string {
  return `${d.ip.includes(":") ? `[${d.ip}]` : d.ip}:${d.port}/${d.protocol}`;
}

/** What `destination` is to kpx, e.g. "the ClusterIP of default/web (port http, 3 ready endpoints)". */
export function describeDestination(
  services: readonly Service[],
  node: NodeSpec,
  destination: Destination,
): string {
  const protocol = destination.protocol.toUpperCase();
  const v6 = destination.ip.includes(":");
  const nodeAddress = node.addresses.includes(destination.ip);
  const roles: string[] = [];
  for (const service of services) {
    for (const port of service.ports) {
      if (port.protocol !== protocol) continue;
      const portName = port.name ? `port ${port.name}` : `port ${port.port}`;
      // Only endpoints of the destination's family: a dual-stack Service lists both.
      const endpoints = port.endpoints.filter((e) => e.address.includes(":") === v6 && e.ready);
      const ready = endpoints.length;
      const local = endpoints.filter((e) => e.nodeName === node.name).length;
      const readyText = `${ready} ready endpoint${ready === 1 ? "" : "s"}`;
      const policy = service.externalTrafficLocal
        ? `, externalTrafficPolicy Local: ${local} on ${node.name}`
        : "";
      const of = `of ${service.id} (${portName}, ${readyText}`;
      if (port.port === destination.port) {
        if (service.clusterIPs.includes(destination.ip)) {
          roles.push(`the ClusterIP ${of})`);
        }
        if (service.externalIPs.includes(destination.ip)) {
          roles.push(`an external IP ${of}${policy})`);
        }
        if (service.loadBalancerIPs.includes(destination.ip)) {
          const ranges = service.firewallSourceRanges.length > 0
            ? `, loadBalancerSourceRanges ${service.firewallSourceRanges.join(" ")}`
            : "";
          roles.push(`a LoadBalancer IP ${of}${policy}${ranges})`);
        }
      }
      if (nodeAddress && port.nodePort === destination.port) {
        roles.push(`a NodePort ${of}${policy}) on node ${node.name}`);
      }
    }
  }
  if (roles.length > 0) return roles.join("; and ");
  const clusterIPOf = services.find((s) => s.clusterIPs.includes(destination.ip));
  if (clusterIPOf !== undefined) {
    return `a ClusterIP of ${clusterIPOf.id}, which has no ${destination.port}/${destination.protocol} port`;
  }
  if (nodeAddress) {
    return `an address of node ${node.name}; no Service has node port ${destination.port}/${destination.protocol}`;
  }
  return "not a Service address in the manifests";
}

/** The kpx chains and maps a probe went through, e.g. ["service-ips4", "class-clusterip", …]. */
export function pathSteps(events: readonly TraceEvent[]): string[] {
  const steps: string[] = [];
  const push = (step: string) => {
    if (steps[steps.length - 1] !== step) steps.push(step);
  };
  for (const event of events) {
    if (event.table !== KPX_TABLE || event.kind !== "rule") continue;
    const text = event.text;
    const refs = [...text.matchAll(/@([\w-]+)/g)].map((m) => m[1]!);
    const numgen = /numgen random mod (\d+)/.exec(text);
    if (numgen !== null) {
      push(`random pick of ${numgen[1]}`);
      if (event.target !== undefined) push(event.target);
    } else if (MASQUERADE_MARK_SET.test(text)) {
      push(
        refs.some((r) => r.includes("hairpin"))
          ? "mark for masquerade (hairpin)"
          : "mark for masquerade",
      );
    } else if (/\bdnat\b/.test(text)) {
      push("DNAT");
    } else if (/\bmasquerade\b/.test(text)) {
      push("masquerade");
    } else if (/(^|\s)reject(\s|$)/.test(text)) { // the statement, not "goto reject-chain"
      push(/tcp reset/.test(text) ? "reject (TCP reset)" : "reject (ICMP port unreachable)");
    } else if (event.verdict === "drop" && event.chain === "firewall-check") {
      push(`${refs.join(" / ")}: source outside loadBalancerSourceRanges: drop`);
    } else if (event.verdict === "drop") {
      push(refs.length > 0 ? `${refs.join(" / ")}: drop` : `drop in ${event.chain}`);
    } else if ((event.verdict === "goto" || event.verdict === "jump") && refs.length > 0) {
      for (const ref of refs) push(ref);
      if (event.target !== undefined) push(event.target);
    }
    // Anything else is plumbing: hook chains jumping to check chains that found nothing, the
    // masquerading chain returning for unmarked packets or clearing the mark.
  }
  return steps;
}

/** Why the source was (or was not) rewritten, from the rules the probe met. */
export function masqueradeReason(events: readonly TraceEvent[], masquerade: boolean): string {
  const kpx = events.filter((e) => e.table === KPX_TABLE);
  const entered = new Set(kpx.map((e) => e.chain));
  const mark = kpx.find((e) => e.kind === "rule" && MASQUERADE_MARK_SET.test(e.text));
  if (masquerade) {
    if (mark === undefined) {
      return "conntrack shows the source rewritten, but no kpx rule was seen marking it";
    }
    if (mark.chain.startsWith("slot-")) {
      return "hairpin: the source is the endpoint the probe was sent to";
    }
    switch (mark.chain) {
      case "class-clusterip":
        if (/saddr != @pod-cidrs/.test(mark.text)) {
          return "the source is outside the cluster's pod CIDRs (detect-local), so replies must come back through this node";
        }
        if (/iifname !=/.test(mark.text)) {
          return "the packet did not arrive on a pod interface (detect-local), so replies must come back through this node";
        }
        return "masqueradeAll is set";
      case "class-external":
      case "class-nodeport":
        return "externalTrafficPolicy Cluster: the endpoint may be on another node, so replies must come back through this node";
      case "class-external-local":
      case "class-nodeport-local":
        return "the node itself is the source (externalTrafficPolicy Local keeps only outside clients' addresses)";
      default:
        return `marked for masquerade in ${mark.chain}`;
    }
  }
  if (entered.has("class-external-local") || entered.has("class-nodeport-local")) {
    return "externalTrafficPolicy Local keeps the client's address";
  }
  if (entered.has("class-clusterip")) {
    return "detect-local counts the source as a pod of the cluster, so it keeps its address";
  }
  return "kpx did not mark it for masquerade";
}
