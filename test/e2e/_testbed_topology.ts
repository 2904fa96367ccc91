/**
 * The testbed's wiring as data: `ip` batch lines and sysctls for each role. Pure functions, so
 * the plan can be read (and unit-tested) apart from the code that runs it.
 *
 *   client ns ──eth0══to-client──┐
 *   node0 ns  ──eth0══to-n0──────┼── br0 (lan ns: 192.0.2.1, 2001:db8::1; does not forward)
 *   node1 ns  ──eth0══to-n1──────┘
 *   node i ns ──veth-ik══eth0── pod ns (one per pod)
 *
 * Every veth pair is created inside one of our namespaces with its peer placed directly into
 * another ("peer name eth0 netns X"), so no interface ever exists in the root namespace.
 * @module
 */

import {
  CLIENT_V4,
  CLIENT_V6,
  GATEWAY_V4,
  GATEWAY_V6,
  LAN_PREFIX_V4,
  LAN_PREFIX_V6,
  nodeIPv4,
  nodeIPv6,
  POD_GATEWAY_V4,
  POD_GATEWAY_V6,
  podCidrV4,
  podCidrV6,
} from "./_testbed_addresses.ts";

export const LAN_BRIDGE = "br0";
/** Name of the external interface in nodes and the client, and of a pod's interface. */
export const EXTERNAL_INTERFACE = "eth0";

/** Sysctls for every namespace; set before its interfaces exist so "default" applies to them. */
export const COMMON_SYSCTLS: Readonly<Record<string, number>> = {
  // Addresses are usable at once: no 1-2 s of "tentative" duplicate address detection.
  "net.ipv6.conf.all.accept_dad": 0,
  "net.ipv6.conf.default.accept_dad": 0,
  // Paths stay the ones we configured: a node forwarding client traffic back out of eth0
  // (client → LB IP → pod on the other node) would otherwise teach the client a shortcut.
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

/** Nodes route for their pods. */
export const NODE_SYSCTLS: Readonly<Record<string, number>> = {
  "net.ipv4.ip_forward": 1,
  "net.ipv6.conf.all.forwarding": 1,
  "net.ipv4.conf.all.send_redirects": 0,
  "net.ipv4.conf.default.send_redirects": 0,
  // Reverse-path filtering off, stated rather than inherited; a test that wants strict
  // rp_filter (as some distributions set) turns it on itself.
  "net.ipv4.conf.all.rp_filter": 0,
  "net.ipv4.conf.default.rp_filter": 0,
};

/** Lan namespace: a bridge holding the gateway addresses; it does not forward. */
export function lanLinks(nodeNamespaces: readonly string[], clientNs: string): string[] {
  const lines = [
    `link add name ${LAN_BRIDGE} type bridge mcast_snooping 0`,
    `addr add ${GATEWAY_V4}/${LAN_PREFIX_V4} dev ${LAN_BRIDGE}`,
    `addr add ${GATEWAY_V6}/${LAN_PREFIX_V6} dev ${LAN_BRIDGE} nodad`,
    `link set ${LAN_BRIDGE} up`,
    "link set lo up",
  ];
  const ports = [
    ...nodeNamespaces.map((ns, i) => ({ port: `to-n${i}`, peerNs: ns })),
    { port: "to-client", peerNs: clientNs },
  ];
  for (const { port, peerNs } of ports) {
    lines.push(
      `link add name ${port} type veth peer name ${EXTERNAL_INTERFACE} netns ${peerNs}`,
      `link set ${port} master ${LAN_BRIDGE} up`,
    );
  }
  return lines;
}

/** Node i: eth0 on the lan, default route to the gateway, other nodes' pod CIDRs via them. */
export function nodeLinks(node: number, nodeCount: number): string[] {
  const lines = [
    "link set lo up",
    `link set ${EXTERNAL_INTERFACE} up`,
    `addr add ${nodeIPv4(node)}/${LAN_PREFIX_V4} dev ${EXTERNAL_INTERFACE}`,
    `addr add ${nodeIPv6(node)}/${LAN_PREFIX_V6} dev ${EXTERNAL_INTERFACE} nodad`,
    // Unmatched destinations (a Service VIP with no rule, say) go to the gateway, which drops
    // them: a silent, harmless sink that stays inside the testbed.
    `route add default via ${GATEWAY_V4}`,
    `route add ::/0 via ${GATEWAY_V6}`,
  ];
  for (let other = 0; other < nodeCount; other++) {
    if (other === node) continue;
    lines.push(
      `route add ${podCidrV4(other)} via ${nodeIPv4(other)}`,
      `route add ${podCidrV6(other)} via ${nodeIPv6(other)}`,
    );
  }
  return lines;
}

/** The outside client: on the lan, default route to the (non-forwarding) gateway. */
export function clientLinks(): string[] {
  return [
    "link set lo up",
    `link set ${EXTERNAL_INTERFACE} up`,
    `addr add ${CLIENT_V4}/${LAN_PREFIX_V4} dev ${EXTERNAL_INTERFACE}`,
    `addr add ${CLIENT_V6}/${LAN_PREFIX_V6} dev ${EXTERNAL_INTERFACE} nodad`,
    `route add default via ${GATEWAY_V4}`,
    `route add ::/0 via ${GATEWAY_V6}`,
  ];
}

/** Node side of a pod: the veth, the pod's /32 and /128 routed to it. */
export function podHostLinks(
  hostVeth: string,
  podNs: string,
  podIPv4: string,
  podIPv6: string,
): string[] {
  return [
    `link add name ${hostVeth} type veth peer name ${EXTERNAL_INTERFACE} netns ${podNs}`,
    `link set ${hostVeth} up`,
    // The pods' IPv6 next hop (see POD_GATEWAY_V6); nodad: usable at once.
    `addr add ${POD_GATEWAY_V6}/64 dev ${hostVeth} nodad`,
    `route add ${podIPv4}/32 dev ${hostVeth}`,
    `route add ${podIPv6}/128 dev ${hostVeth}`,
  ];
}

/** Per-veth sysctls on the node that let pods use 169.254.1.1 as their IPv4 next hop. */
export function podHostSysctls(hostVeth: string): Record<string, number> {
  return {
    // Answer the pod's ARP for 169.254.1.1 (any address routed elsewhere) with our MAC.
    [`net.ipv4.conf.${hostVeth}.proxy_arp`]: 1,
    // Proxy ARP replies to broadcasts are otherwise delayed by up to 0.8 s.
    [`net.ipv4.neigh.${hostVeth}.proxy_delay`]: 0,
  };
}

/**
 * Pod side: host addresses (/32, /128) so that even a same-node neighbour is reached through
 * the node, and default routes to the node (so Service VIPs, external IPs, everything goes
 * through the node's rules).
 */
export function podLinks(podIPv4: string, podIPv6: string): string[] {
  return [
    "link set lo up",
    `link set ${EXTERNAL_INTERFACE} up`,
    `addr add ${podIPv4}/32 dev ${EXTERNAL_INTERFACE}`,
    `addr add ${podIPv6}/128 dev ${EXTERNAL_INTERFACE} nodad`,
    `route add ${POD_GATEWAY_V4}/32 dev ${EXTERNAL_INTERFACE} scope link`,
    `route add default via ${POD_GATEWAY_V4} dev ${EXTERNAL_INTERFACE}`,
    `route add ::/0 via ${POD_GATEWAY_V6} dev ${EXTERNAL_INTERFACE}`,
  ];
}
