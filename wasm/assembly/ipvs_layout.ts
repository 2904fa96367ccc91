// The nftables side of IPVS mode: IPVS does the load balancing (virtual
// services on kube-ipvs0 addresses and node IPs), and these fixed chains do
// what IPVS cannot: masquerade decisions, hairpin, loadBalancerSourceRanges,
// reject/drop for services without (local) endpoints, and rejecting traffic
// to unallocated service IPs.
//
// It lives in the same `inet kpx` table as nftables mode, under its own layout
// version. The two modes must never be active together (nftables mode's DNAT
// in prerouting would take service traffic before IPVS sees it), and a table
// of another layout is replaced whole by the next full plan, in one
// transaction: switching modes cannot leave the other mode's rules behind,
// and `kpx cleanup` / `kpx status` work unchanged.
//
// Every per-service fact is a set or map element keyed by something that
// belongs to one service only (a virtual service's address . protocol . port,
// a ClusterIP), so a delta's element deletes never remove another service's
// element. The one exception, the hairpin set, is add-only in deltas (see
// ipvs_batch.ts).
import { Config } from "./model";
import {
  addrType,
  concat,
  CT_STATE_INVALID,
  CT_STATE_NEW,
  daddr,
  DPORT,
  DROP,
  goto,
  jump,
  L4PROTO,
  MARK,
  markMasquerade,
  match,
  nfproto,
  RETURN,
  saddr,
  setRef,
  vmap,
} from "./expr";
import { ChainDef, localSource, MapDecl } from "./layout";
import { CHAIN_REJECT } from "./names";
import { LOCAL_CIDR } from "./abi";

/** Layout version of IPVS mode's table; far from nftables mode's small numbers. */
export const IPVS_LAYOUT_VERSION: u32 = 1001;

// Map ids: kind * 2 + (1 for IPv6).
export const I_CLASSES: i32 = 0; //        vs addr . proto . port : goto class chain (masquerade decision)
export const I_CLUSTER_IPS: i32 = 1; //    ClusterIPs (set)
export const I_CLUSTER_PORTS: i32 = 2; //  ClusterIP . proto . port of every ClusterIP virtual service (set)
export const I_NO_ENDPOINTS: i32 = 3; //   vs addr . proto . port : drop | goto reject-chain
export const I_FIREWALL_IPS: i32 = 4; //   LB IP . proto . port with source ranges (set)
export const I_FIREWALL_ALLOW: i32 = 5; // LB IP . proto . port . source range (interval set)
export const I_HAIRPIN: i32 = 6; //        local endpoint . itself (set)
export const I_SERVICE_CIDRS: i32 = 7; //  configured service CIDRs (interval set)
export const I_POD_CIDRS: i32 = 8; //      "local" sources for detect-local (interval set)
export const I_KINDS: i32 = 9;

const NAMES: string[] = [
  "ipvs-classes",
  "cluster-ips",
  "cluster-ports",
  "no-endpoint-services",
  "firewall-ips",
  "firewall-allow",
  "hairpin",
  "service-cidrs",
  "pod-cidrs",
];

export function ipvsMapId(kind: i32, v6: bool): i32 {
  return kind * 2 + (v6 ? 1 : 0);
}

export function ipvsMapName(kind: i32, v6: bool): string {
  return NAMES[kind] + (v6 ? "6" : "4");
}

function keyType(kind: i32, v6: bool): string {
  const a = addrType(v6);
  switch (kind) {
    case I_CLASSES:
    case I_CLUSTER_PORTS:
    case I_NO_ENDPOINTS:
    case I_FIREWALL_IPS:
      return "[" + a + ',"inet_proto","inet_service"]';
    case I_FIREWALL_ALLOW:
      return "[" + a + ',"inet_proto","inet_service",' + a + "]";
    case I_HAIRPIN:
      return "[" + a + "," + a + "]";
    default:
      return a;
  }
}

let DECLS: MapDecl[] | null = null;

/** All fixed maps and sets of IPVS mode, indexed by ipvsMapId(). */
export function ipvsMapDecls(): MapDecl[] {
  if (DECLS != null) return DECLS!;
  const out = new Array<MapDecl>(I_KINDS * 2);
  for (let kind = 0; kind < I_KINDS; kind++) {
    for (let f = 0; f < 2; f++) {
      const v6 = f == 1;
      const isMap = kind == I_CLASSES || kind == I_NO_ENDPOINTS;
      let decl = '"type":' + keyType(kind, v6);
      if (isMap) decl += ',"map":"verdict"';
      if (kind == I_FIREWALL_ALLOW || kind == I_SERVICE_CIDRS || kind == I_POD_CIDRS) {
        decl += ',"flags":["interval"]';
      }
      out[ipvsMapId(kind, v6)] = new MapDecl(ipvsMapName(kind, v6), isMap, decl);
    }
  }
  DECLS = out;
  return out;
}

// Fixed chains of IPVS mode.
export const CHAIN_SERVICE_CHECKS = "service-checks";
export const CHAIN_CLUSTER_IPS_CHECK = "cluster-ips-check";
export const CHAIN_IPVS_CLUSTERIP = "ipvs-class-clusterip";
export const CHAIN_IPVS_EXTERNAL = "ipvs-class-external";
export const CHAIN_IPVS_MASQUERADING = "masquerading";

function baseChain(type: string, hook: string, prio: i32): string {
  return '"type":"' + type + '","hook":"' + hook + '","prio":' + prio.toString() +
    ',"policy":"accept"';
}

function vsKey(v6: bool): string {
  return concat([daddr(v6), L4PROTO, DPORT]);
}

const L4_WITH_PORTS = '{"set":["tcp","udp","sctp"]}';

export function ipvsFixedChains(cfg: Config): ChainDef[] {
  const masq = cfg.masqueradeMark;
  const chains = new Array<ChainDef>();

  // -- filter. IPVS takes packets for a virtual service in LOCAL_IN at
  // priority 98 (NF_IP_PRI_NAT_SRC - 2) and, for the node's own connections,
  // in LOCAL_OUT at -98 (NF_IP_PRI_NAT_DST + 2). The checks must decide
  // before that: input at -10 (after conntrack, before the default filter
  // chains), output at -110 (before IPVS and before the nat output chain).
  // Only new connections are checked: an accepted one stays accepted.
  chains.push(new ChainDef("filter-input", baseChain("filter", "input", -10))
    .rule([CT_STATE_NEW, jump(CHAIN_SERVICE_CHECKS)]));
  chains.push(new ChainDef("filter-output", baseChain("filter", "output", -110))
    .rule([CT_STATE_NEW, jump(CHAIN_SERVICE_CHECKS)]));
  // Service addresses are local (kube-ipvs0), so only traffic to addresses
  // that are not (unallocated service IPs) is forwarded.
  const forward = new ChainDef("filter-forward", baseChain("filter", "forward", -10));
  // As in nftables mode: out-of-window TCP packets conntrack marks invalid
  // would reach the client un-NATed and make it reset the connection.
  if (cfg.dropInvalid) forward.rule([CT_STATE_INVALID, DROP]);
  forward.rule([CT_STATE_NEW, jump(CHAIN_CLUSTER_IPS_CHECK)]);
  chains.push(forward);

  // -- nat: the masquerade decision is taken before IPVS rewrites the
  // destination (dstnat priority, prerouting for traffic arriving, output for
  // the node's own), as a packet mark that survives IPVS's rewrite; the
  // masquerade itself happens at srcnat. This is why net.ipv4.vs.conntrack=1
  // is needed: without it IPVS bypasses conntrack and no NAT happens.
  for (let h = 0; h < 2; h++) {
    const hook = h == 0 ? "prerouting" : "output";
    const c = new ChainDef("nat-" + hook, baseChain("nat", hook, -100));
    c.rule([vmap(vsKey(false), ipvsMapName(I_CLASSES, false))]);
    c.rule([vmap(vsKey(true), ipvsMapName(I_CLASSES, true))]);
    chains.push(c);
  }
  chains.push(new ChainDef("nat-postrouting", baseChain("nat", "postrouting", 100))
    .rule([jump(CHAIN_IPVS_MASQUERADING)]));

  // -- reject: TCP gets a RST, everything else ICMP port unreachable (the
  // same chain name as nftables mode).
  chains.push(
    new ChainDef(CHAIN_REJECT, "")
      .rule([match("==", L4PROTO, '"tcp"'), '{"reject":{"type":"tcp reset"}}'])
      .rule(['{"reject":{"type":"icmpx","expr":"port-unreachable"}}']),
  );

  // -- checks on new connections to the node (virtual services included).
  const checks = new ChainDef(CHAIN_SERVICE_CHECKS, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    // loadBalancerSourceRanges: the LB IP:port has ranges and the source is in
    // none of them. IPVS has no source filter of its own.
    checks.rule([
      match("==", vsKey(v6), setRef(ipvsMapName(I_FIREWALL_IPS, v6))),
      match(
        "!=",
        concat([daddr(v6), L4PROTO, DPORT, saddr(v6)]),
        setRef(ipvsMapName(I_FIREWALL_ALLOW, v6)),
      ),
      DROP,
    ]);
  }
  // No usable endpoint: drop (Local policy, endpoints elsewhere) or reject.
  // The virtual service exists without real servers, and IPVS would answer
  // ICMP port unreachable even to TCP; a RST makes clients fail fast.
  checks.rule([vmap(vsKey(false), ipvsMapName(I_NO_ENDPOINTS, false))]);
  checks.rule([vmap(vsKey(true), ipvsMapName(I_NO_ENDPOINTS, true))]);
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    // A ClusterIP is a local address (kube-ipvs0): a port no service uses
    // would reach whatever the node itself listens on. Only protocols with
    // ports are checked (th dport means nothing for ICMP): ClusterIPs answer
    // ping, as they do under kube-proxy's IPVS mode.
    checks.rule([
      match("==", L4PROTO, L4_WITH_PORTS),
      match("==", daddr(v6), setRef(ipvsMapName(I_CLUSTER_IPS, v6))),
      match("!=", vsKey(v6), setRef(ipvsMapName(I_CLUSTER_PORTS, v6))),
      goto(CHAIN_REJECT),
    ]);
  }
  checks.rule([jump(CHAIN_CLUSTER_IPS_CHECK)]);
  chains.push(checks);

  // -- an address of a service CIDR that no service has: rejected so
  // clients fail fast instead of being routed off the node.
  const cip = new ChainDef(CHAIN_CLUSTER_IPS_CHECK, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    cip.rule([
      match("==", daddr(v6), setRef(ipvsMapName(I_SERVICE_CIDRS, v6))),
      match("!=", daddr(v6), setRef(ipvsMapName(I_CLUSTER_IPS, v6))),
      goto(CHAIN_REJECT),
    ]);
  }
  chains.push(cip);

  // -- masquerade decisions, per kind of virtual service (the classes map
  // points each one here). ClusterIPs: only sources outside the cluster (or
  // everything with masqueradeAll), so replies come back through this node.
  const mark = markMasquerade(masq);
  const clusterip = new ChainDef(CHAIN_IPVS_CLUSTERIP, "");
  if (cfg.masqueradeAll) {
    clusterip.rule([mark]);
  } else {
    for (let f = 0; f < 2; f++) {
      const notLocal = localSource(cfg, f == 1, true);
      if (notLocal.length > 0) {
        clusterip.rule(
          cfg.localMode == LOCAL_CIDR ? [notLocal, mark] : [nfproto(f == 1), notLocal, mark],
        );
      }
    }
  }
  chains.push(clusterip);
  // External IPs, LB IPs and node ports under the Cluster policy: always
  // masqueraded (the endpoint may be on another node). Under the Local policy
  // they have no class: the client's address is kept.
  chains.push(new ChainDef(CHAIN_IPVS_EXTERNAL, "").rule([mark]));

  // -- hairpin: after IPVS's rewrite a pod that reached itself through a
  // service has source == destination; unmasqueraded, it would answer
  // itself directly and drop the reply. Then masquerade what was marked and
  // clear the bit so it does not leak to whatever else reads the mark.
  const masqChain = new ChainDef(CHAIN_IPVS_MASQUERADING, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    masqChain.rule([
      match("==", concat([saddr(v6), daddr(v6)]), setRef(ipvsMapName(I_HAIRPIN, v6))),
      mark,
    ]);
  }
  masqChain
    .rule([match("==", '{"&":[' + MARK + "," + masq.toString() + "]}", "0"), RETURN])
    .rule(['{"mangle":{"key":' + MARK + ',"value":{"^":[' + MARK + "," + masq.toString() + "]}}}"])
    .rule(['{"masquerade":{"flags":["fully-random"]}}']);
  chains.push(masqChain);
  return chains;
}
