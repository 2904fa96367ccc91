/**
 * The throwaway network a trace runs in, as data: namespaces, `ip` batch lines and sysctls.
 * Pure functions, so the plan can be read (and unit-tested) apart from the code that runs it.
 *
 *   outside ns ──eth0══eth0── node ns ──<pod if>══eth0── pod ns (only for a pod source)
 *   169.254.0.1, fe80::1        169.254.0.2, fe80::2, the Node's addresses
 *
 * The node namespace is set up as the Node object describes it (its addresses on eth0) and
 * routes everything else to the outside namespace. The outside namespace is both the world
 * beyond the node and its sink: it holds a source address from outside (when that is where the
 * probes come from) and silently swallows every packet addressed elsewhere (it does not
 * forward, and a host that does not forward drops such packets without an ICMP error), so
 * nothing but kpx's rules and the node itself answers a probe.
 *
 * Every veth pair is created inside the node namespace with its peer placed directly into
 * another ("peer name eth0 netns X"): no interface ever exists in the root namespace.
 * @module
 */

import type { LocalDetection } from "../planner/mod.ts";
import { cidrContains, type NodeSpec, parseCIDR, parseIP } from "../state/mod.ts";

/** Where the probes start (see sourceKind()). */
export type SourceKind = "node" | "pod" | "outside";

export const EXTERNAL_INTERFACE = "eth0";
/** Link addresses between the node and the outside; link-local, so they are never a Node's. */
export const OUTSIDE_LINK_V4 = "169.254.0.1";
export const NODE_LINK_V4 = "169.254.0.2";
export const OUTSIDE_LINK_V6 = "fe80::1";
export const NODE_LINK_V6 = "fe80::2";
/**
 * The pod's next hop: on the node's pod-facing interface (a /32 and a link-local address), so
 * the pod needs no address from a shared subnet (the Calico pattern, without proxy ARP).
 */
export const POD_GATEWAY_V4 = "169.254.1.1";
export const POD_GATEWAY_V6 = "fe80::3";
/** Addresses the lab uses itself: a source may not be one of them. */
export const LAB_ADDRESSES: readonly string[] = [
  OUTSIDE_LINK_V4,
  NODE_LINK_V4,
  POD_GATEWAY_V4,
  OUTSIDE_LINK_V6,
  NODE_LINK_V6,
  POD_GATEWAY_V6,
];

const DEFAULT_POD_INTERFACE = "kpxpod0";
const BRIDGE_PORT = "kpxpod0";
const MAX_INTERFACE_NAME = 15;

/** Sysctls for every namespace; set before its interfaces exist so "default" applies to them. */
const COMMON_SYSCTLS: Readonly<Record<string, number>> = {
  // Addresses are usable at once: no 1-2 s of "tentative" duplicate address detection.
  "net.ipv6.conf.all.accept_dad": 0,
  "net.ipv6.conf.default.accept_dad": 0,
  "net.ipv4.conf.all.accept_redirects": 0,
  "net.ipv4.conf.default.accept_redirects": 0,
  "net.ipv6.conf.all.accept_redirects": 0,
  "net.ipv6.conf.default.accept_redirects": 0,
  // No ICMP error rate limits: a burst of probes at a rejected port must see every ICMP port
  // unreachable (a "reject"), not a rate-limited silence that looks like a "drop".
  "net.ipv4.icmp_ratelimit": 0,
  "net.ipv6.icmp.ratelimit": 0,
  "net.ipv4.icmp_msgs_per_sec": 1_000_000,
  "net.ipv4.icmp_msgs_burst": 100_000,
};

/** The node routes (for pods, and DNATed packets on to their endpoints). */
const NODE_SYSCTLS: Readonly<Record<string, number>> = {
  "net.ipv4.ip_forward": 1,
  "net.ipv6.conf.all.forwarding": 1,
  "net.ipv4.conf.all.send_redirects": 0,
  "net.ipv4.conf.default.send_redirects": 0,
  // Reverse-path filtering off, stated rather than inherited from the host's defaults.
  "net.ipv4.conf.all.rp_filter": 0,
  "net.ipv4.conf.default.rp_filter": 0,
};

/** The outside swallows what is not addressed to it: it must not forward (see module doc). */
const OUTSIDE_SYSCTLS: Readonly<Record<string, number>> = {
  "net.ipv4.ip_forward": 0,
  "net.ipv6.conf.all.forwarding": 0,
};

/** How the node's side of the pod link looks: detect-local modes match interface names. */
export type PodInterface =
  | { kind: "veth"; name: string }
  | { kind: "bridge"; bridge: string; port: string };

export interface TopologyInput {
  /** Namespace name prefix (claimed by the caller, see netns.ts). */
  prefix: string;
  node: NodeSpec;
  source: string;
  kind: SourceKind;
  localDetection: LocalDetection;
}

export interface IpBatch {
  ns: string;
  /** What the batch does, for error messages ("Cannot <what>: …"). */
  what: string;
  lines: string[];
}

export interface Topology {
  node: string;
  outside: string;
  /** Present for a pod source. */
  pod?: string;
  /** Where the probe client runs. */
  probeNs: string;
  /** Namespace → sysctls, applied before any batch. */
  sysctls: Map<string, Record<string, number>>;
  /** Run in order: the node's batch creates the links the others configure. */
  batches: IpBatch[];
  podInterface?: PodInterface;
}

/** Node IP → locally generated; in the node's podCIDRs → a pod of the node; else outside. */
export function sourceKind(source: string, node: NodeSpec): SourceKind {
  const ip = parseIP(source);
  if (ip === null) throw new TypeError(`Cannot place source ${source}: not an IP address`);
  if (node.addresses.includes(ip.text)) return "node";
  const inPodCIDR = node.podCIDRs.some((cidr) => {
    const parsed = parseCIDR(cidr);
    return parsed !== null && cidrContains(parsed, ip);
  });
  return inPodCIDR ? "pod" : "outside";
}

/** The node's pod-facing interface, named so kpx's detect-local mode recognises it. */
export function podInterface(localDetection: LocalDetection): PodInterface {
  switch (localDetection.mode) {
    case "BridgeInterface":
      return { kind: "bridge", bridge: localDetection.interfaceName, port: BRIDGE_PORT };
    case "InterfaceNamePrefix":
      // The longest name the kernel takes that still starts with the prefix.
      return {
        kind: "veth",
        name: `${localDetection.interfacePrefix}0`.slice(0, MAX_INTERFACE_NAME),
      };
    default:
      return { kind: "veth", name: DEFAULT_POD_INTERFACE };
  }
}

export function planTopology(input: TopologyInput): Topology {
  const node = `${input.prefix}-node`;
  const outside = `${input.prefix}-out`;
  const pod = input.kind === "pod" ? `${input.prefix}-pod` : undefined;
  const sysctls = new Map<string, Record<string, number>>([
    [node, { ...COMMON_SYSCTLS, ...NODE_SYSCTLS }],
    [outside, { ...COMMON_SYSCTLS, ...OUTSIDE_SYSCTLS }],
  ]);
  const nodeLines = nodeLinks(input.node, outside);
  const batches: IpBatch[] = [];
  let podIf: PodInterface | undefined;
  if (pod !== undefined) {
    sysctls.set(pod, { ...COMMON_SYSCTLS });
    podIf = podInterface(input.localDetection);
    nodeLines.push(...podHostLinks(podIf, pod, input.source));
  }
  batches.push({ ns: node, what: `configure node namespace ${node}`, lines: nodeLines });
  batches.push({
    ns: outside,
    what: `configure outside namespace ${outside}`,
    lines: outsideLinks(input.kind === "outside" ? input.source : undefined),
  });
  if (pod !== undefined) {
    batches.push({
      ns: pod,
      what: `configure pod namespace ${pod}`,
      lines: podLinks(input.source),
    });
  }
  const probeNs = input.kind === "node" ? node : input.kind === "pod" ? pod! : outside;
  return {
    node,
    outside,
    ...(pod === undefined ? {} : { pod }),
    probeNs,
    sysctls,
    batches,
    ...(podIf === undefined ? {} : { podInterface: podIf }),
  };
}

/** `addr add` for a host address: /32 or /128 (nodad: usable at once). */
function hostAddress(ip: string, dev: string): string {
  return ip.includes(":") ? `addr add ${ip}/128 dev ${dev} nodad` : `addr add ${ip}/32 dev ${dev}`;
}

function nodeLinks(node: NodeSpec, outsideNs: string): string[] {
  return [
    "link set lo up",
    `link add name ${EXTERNAL_INTERFACE} type veth peer name ${EXTERNAL_INTERFACE} netns ${outsideNs}`,
    `link set ${EXTERNAL_INTERFACE} up`,
    // Scope link: never chosen as a source address (masquerade picks the Node's address).
    `addr add ${NODE_LINK_V4}/32 dev ${EXTERNAL_INTERFACE} scope link`,
    `addr add ${NODE_LINK_V6}/64 dev ${EXTERNAL_INTERFACE} nodad`,
    ...node.addresses.map((ip) => hostAddress(ip, EXTERNAL_INTERFACE)),
    `route add default via ${OUTSIDE_LINK_V4} dev ${EXTERNAL_INTERFACE} onlink`,
    `route add ::/0 via ${OUTSIDE_LINK_V6} dev ${EXTERNAL_INTERFACE}`,
  ];
}

function outsideLinks(source: string | undefined): string[] {
  return [
    "link set lo up",
    `link set ${EXTERNAL_INTERFACE} up`,
    `addr add ${OUTSIDE_LINK_V4}/32 dev ${EXTERNAL_INTERFACE} scope link`,
    `addr add ${OUTSIDE_LINK_V6}/64 dev ${EXTERNAL_INTERFACE} nodad`,
    ...(source === undefined ? [] : [hostAddress(source, EXTERNAL_INTERFACE)]),
    `route add default via ${NODE_LINK_V4} dev ${EXTERNAL_INTERFACE} onlink`,
    `route add ::/0 via ${NODE_LINK_V6} dev ${EXTERNAL_INTERFACE}`,
  ];
}

function podHostLinks(podIf: PodInterface, podNs: string, source: string): string[] {
  const veth = podIf.kind === "veth" ? podIf.name : podIf.port;
  const routed = podIf.kind === "veth" ? podIf.name : podIf.bridge;
  const lines = [`link add name ${veth} type veth peer name ${EXTERNAL_INTERFACE} netns ${podNs}`];
  if (podIf.kind === "bridge") {
    lines.push(
      `link add name ${podIf.bridge} type bridge`,
      `link set ${podIf.bridge} up`,
      `link set ${veth} master ${podIf.bridge}`,
    );
  }
  const prefix = source.includes(":") ? 128 : 32;
  lines.push(
    `link set ${veth} up`,
    `addr add ${POD_GATEWAY_V4}/32 dev ${routed} scope link`,
    `addr add ${POD_GATEWAY_V6}/64 dev ${routed} nodad`,
    `route add ${source}/${prefix} dev ${routed}`,
  );
  return lines;
}

function podLinks(source: string): string[] {
  return [
    "link set lo up",
    `link set ${EXTERNAL_INTERFACE} up`,
    hostAddress(source, EXTERNAL_INTERFACE),
    `route add default via ${POD_GATEWAY_V4} dev ${EXTERNAL_INTERFACE} onlink`,
    `route add ::/0 via ${POD_GATEWAY_V6} dev ${EXTERNAL_INTERFACE}`,
  ];
}
