// The fixed part of kpx's nftables table: the maps and sets whose elements
// carry all per-service data, and the chains whose rules never change with the
// services (only with the configuration). Per-packet work is a constant number
// of hash lookups whatever the number of services or endpoints.
import { Config } from "./model";
import {
  addrType,
  concat,
  CT_STATE_INVALID,
  CT_STATE_NEW,
  CT_STATUS_DNAT,
  daddr,
  DPORT,
  DROP,
  FIB_DADDR_LOCAL,
  FIB_SADDR_LOCAL,
  goto,
  jump,
  L4PROTO,
  MARK,
  markMasquerade,
  match,
  nfproto,
  prefixOrAddr,
  RETURN,
  saddr,
  setRef,
  vmap,
} from "./expr";
import {
  CHAIN_CLASS_CLUSTERIP,
  CHAIN_CLASS_EXTERNAL,
  CHAIN_CLASS_EXTERNAL_LOCAL,
  CHAIN_CLASS_NODEPORT,
  CHAIN_CLASS_NODEPORT_LOCAL,
  CHAIN_CLUSTER_IPS,
  CHAIN_FIREWALL,
  CHAIN_MASQUERADING,
  CHAIN_NODEPORT_ENDPOINTS,
  CHAIN_REJECT,
  CHAIN_SERVICE_ENDPOINTS,
  CHAIN_SERVICES,
} from "./names";
import { LOCAL_BRIDGE, LOCAL_CIDR, LOCAL_PREFIX } from "./abi";

// ---- maps and sets -------------------------------------------------------
// Map ids: kind * 2 + (1 for IPv6).
export const M_SERVICE_IPS: i32 = 0; //        vip . proto . port : verdict (class chain)
export const M_SERVICE_NODEPORTS: i32 = 1; //  proto . port : verdict (class chain)
export const M_VIP_TARGETS: i32 = 2; //        vip . proto . port : verdict (endpoint pick)
export const M_VIP_SC_TARGETS: i32 = 3; //     same, short-circuit list of eTP=Local
export const M_NP_TARGETS: i32 = 4; //         proto . port : verdict (endpoint pick)
export const M_NP_SC_TARGETS: i32 = 5;
export const M_VIP_ADDRS: i32 = 6; //          vip . proto . port . slot : endpoint address
export const M_VIP_PORTS: i32 = 7; //          vip . proto . port . slot : endpoint port
export const M_NP_ADDRS: i32 = 8; //           proto . port . slot : endpoint address
export const M_NP_PORTS: i32 = 9;
export const M_VIP_HAIRPIN: i32 = 10; //       endpoint . vip . proto . port . slot (set)
export const M_NP_HAIRPIN: i32 = 11; //        endpoint . proto . port . slot (set)
export const M_NOEP_SERVICES: i32 = 12; //     vip . proto . port : drop | goto reject-chain
export const M_NOEP_NODEPORTS: i32 = 13; //    proto . port : drop | goto reject-chain
export const M_FIREWALL_IPS: i32 = 14; //      vip . proto . port (set): LB IPs with source ranges
export const M_FIREWALL_ALLOW: i32 = 15; //    vip . proto . port . source range (interval set)
export const M_CLUSTER_IPS: i32 = 16; //       allocated ClusterIPs (set)
export const M_SERVICE_CIDRS: i32 = 17; //     configured service CIDRs (interval set)
export const M_POD_CIDRS: i32 = 18; //         "local" sources for detect-local (interval set)
export const M_NODEPORT_ADDRS: i32 = 19; //    nodePortAddresses (interval set)
export const MAP_KINDS: i32 = 20;

export class MapDecl {
  constructor(
    public name: string,
    public isMap: bool,
    public decl: string, // JSON of the "map"/"set" object without the family/table/name
  ) {}
}

function keyType(kind: i32, v6: bool): string {
  const a = addrType(v6);
  switch (kind) {
    case M_SERVICE_IPS:
    case M_VIP_TARGETS:
    case M_VIP_SC_TARGETS:
    case M_NOEP_SERVICES:
    case M_FIREWALL_IPS:
      return "[" + a + ',"inet_proto","inet_service"]';
    case M_SERVICE_NODEPORTS:
    case M_NP_TARGETS:
    case M_NP_SC_TARGETS:
    case M_NOEP_NODEPORTS:
      return '["inet_proto","inet_service"]';
    case M_VIP_ADDRS:
    case M_VIP_PORTS:
      return "[" + a + ',"inet_proto","inet_service","mark"]';
    case M_NP_ADDRS:
    case M_NP_PORTS:
      return '["inet_proto","inet_service","mark"]';
    case M_VIP_HAIRPIN:
      return "[" + a + "," + a + ',"inet_proto","inet_service","mark"]';
    case M_NP_HAIRPIN:
      return "[" + a + ',"inet_proto","inet_service","mark"]';
    case M_FIREWALL_ALLOW:
      return "[" + a + ',"inet_proto","inet_service",' + a + "]";
    default:
      return a;
  }
}

function dataType(kind: i32, v6: bool): string {
  switch (kind) {
    case M_SERVICE_IPS:
    case M_SERVICE_NODEPORTS:
    case M_VIP_TARGETS:
    case M_VIP_SC_TARGETS:
    case M_NP_TARGETS:
    case M_NP_SC_TARGETS:
    case M_NOEP_SERVICES:
    case M_NOEP_NODEPORTS:
      return '"verdict"';
    case M_VIP_ADDRS:
    case M_NP_ADDRS:
      return addrType(v6);
    case M_VIP_PORTS:
    case M_NP_PORTS:
      return '"inet_service"';
    default:
      return "";
  }
}

const BASE_NAMES: string[] = [
  "service-ips",
  "service-nodeports",
  "vip-targets",
  "vip-sc-targets",
  "nodeport-targets",
  "nodeport-sc-targets",
  "vip-endpoint-addrs",
  "vip-endpoint-ports",
  "nodeport-endpoint-addrs",
  "nodeport-endpoint-ports",
  "vip-hairpin",
  "nodeport-hairpin",
  "no-endpoint-services",
  "no-endpoint-nodeports",
  "firewall-ips",
  "firewall-allow",
  "cluster-ips",
  "service-cidrs",
  "pod-cidrs",
  "nodeport-addresses",
];

export function mapId(kind: i32, v6: bool): i32 {
  return kind * 2 + (v6 ? 1 : 0);
}

export function mapName(kind: i32, v6: bool): string {
  return BASE_NAMES[kind] + (v6 ? "6" : "4");
}

let DECLS: MapDecl[] | null = null;

/** All fixed maps and sets, indexed by mapId(). */
export function mapDecls(): MapDecl[] {
  if (DECLS != null) return DECLS!;
  const out = new Array<MapDecl>(MAP_KINDS * 2);
  for (let kind = 0; kind < MAP_KINDS; kind++) {
    for (let f = 0; f < 2; f++) {
      const v6 = f == 1;
      const data = dataType(kind, v6);
      const interval = kind == M_FIREWALL_ALLOW || kind == M_SERVICE_CIDRS ||
        kind == M_POD_CIDRS || kind == M_NODEPORT_ADDRS;
      let decl = '"type":' + keyType(kind, v6);
      if (data.length > 0) decl += ',"map":' + data;
      // Interval sets hold CIDRs (and, for firewall-allow, a CIDR as the last
      // field of a concatenation, which nft implements as a pipapo set).
      if (interval) decl += ',"flags":["interval"]';
      out[mapId(kind, v6)] = new MapDecl(mapName(kind, v6), data.length > 0, decl);
    }
  }
  DECLS = out;
  return out;
}

// ---- chains ------------------------------------------------------------
export class ChainDef {
  rules: string[] = [];
  constructor(
    public name: string,
    public base: string, // "" or the type/hook/prio/policy JSON of a base chain
  ) {}
  rule(exprs: string[]): ChainDef {
    this.rules.push("[" + exprs.join(",") + "]");
    return this;
  }
}

function baseChain(type: string, hook: string, prio: i32): string {
  return '"type":"' + type + '","hook":"' + hook + '","prio":' + prio.toString() +
    ',"policy":"accept"';
}

/** Match for "the source is local to the cluster / this node" (detect-local),
 *  or "" when the configured mode gives no answer for this family. */
export function localSource(cfg: Config, v6: bool, negate: bool): string {
  const op = negate ? "!=" : "==";
  if (cfg.localMode == LOCAL_CIDR) {
    // pod-cidrs holds clusterCIDR (ClusterCIDR mode) or the node's podCIDRs
    // (NodeCIDR mode). With no CIDR of this family, kube-proxy has no local
    // detector for it: no rule.
    let has = false;
    for (let i = 0; i < cfg.localCIDRs.length; i++) {
      if ((cfg.localCIDRs[i].indexOf(":") >= 0) == v6) has = true;
    }
    if (!has) return "";
    // One CIDR (the usual case): a prefix compare, cheaper per new
    // connection than a lookup in the interval set, which serves several.
    let only = "";
    let count = 0;
    for (let i = 0; i < cfg.localCIDRs.length; i++) {
      const c = cfg.localCIDRs[i];
      if ((c.indexOf(":") >= 0) == v6) {
        only = c;
        count++;
      }
    }
    if (count == 1) return match(op, saddr(v6), prefixOrAddr(only));
    return match(op, saddr(v6), setRef(mapName(M_POD_CIDRS, v6)));
  }
  if (cfg.localMode == LOCAL_BRIDGE) {
    return match(op, '{"meta":{"key":"iifname"}}', '"' + cfg.localInterface + '"');
  }
  if (cfg.localMode == LOCAL_PREFIX) {
    // A trailing * makes nft match the interface name as a prefix.
    return match(op, '{"meta":{"key":"iifname"}}', '"' + cfg.localInterface + '*"');
  }
  return "";
}

function vipKey(v6: bool): string {
  return concat([daddr(v6), L4PROTO, DPORT]);
}

const NODEPORT_KEY = concat([L4PROTO, DPORT]);

/** Which destinations are node-port addresses: the configured CIDRs, or every
 *  local address except loopback (node ports on 127.0.0.1 would be reachable
 *  from any local process, which kube-proxy's nftables mode also refuses). */
function nodePortDestination(cfg: Config, v6: bool): string[] {
  if (cfg.nodePortAddressesListed) {
    return [match("==", daddr(v6), setRef(mapName(M_NODEPORT_ADDRS, v6))), FIB_DADDR_LOCAL];
  }
  return [
    match("!=", daddr(v6), v6 ? '"::1"' : '{"prefix":{"addr":"127.0.0.0","len":8}}'),
    FIB_DADDR_LOCAL,
  ];
}

export function fixedChains(cfg: Config): ChainDef[] {
  const masq = cfg.masqueradeMark;
  const chains = new Array<ChainDef>();

  // -- filter hooks. Priority -110 runs before DNAT (-100): source-range checks
  // must see the LB IP. Priority -10 runs after DNAT and before the default
  // filter chains: a packet still addressed to a service IP at that point was
  // not DNATed, so it has no usable endpoint.
  chains.push(new ChainDef("filter-prerouting", baseChain("filter", "prerouting", -110))
    .rule([CT_STATE_NEW, jump(CHAIN_FIREWALL)]));
  chains.push(new ChainDef("filter-output-pre-dnat", baseChain("filter", "output", -110))
    .rule([CT_STATE_NEW, jump(CHAIN_FIREWALL)]));
  // After DNAT, the checks below look for what was not DNATed: a packet
  // still addressed to a service. A DNATed connection (one that got an
  // endpoint) skips them with one flag test instead of three lookups, on
  // every packet: kube-proxy's nftables mode makes those lookups for every
  // new connection. "return" ends only this chain: other tables' and the
  // host firewall's chains on the hook still see the packet.
  chains.push(
    new ChainDef("filter-input", baseChain("filter", "input", -10))
      .rule([CT_STATUS_DNAT, RETURN])
      .rule([CT_STATE_NEW, jump(CHAIN_NODEPORT_ENDPOINTS)])
      .rule([CT_STATE_NEW, jump(CHAIN_SERVICE_ENDPOINTS)]),
  );
  const forward = new ChainDef("filter-forward", baseChain("filter", "forward", -10));
  // Out-of-window TCP packets that conntrack marks invalid would otherwise be
  // forwarded un-NATed to the client, which answers with a RST that kills the
  // connection (kube-proxy drops them too unless conntrack.tcpBeLiberal).
  if (cfg.dropInvalid) forward.rule([CT_STATE_INVALID, DROP]);
  forward.rule([CT_STATUS_DNAT, RETURN]);
  forward.rule([CT_STATE_NEW, jump(CHAIN_SERVICE_ENDPOINTS)]);
  forward.rule([CT_STATE_NEW, jump(CHAIN_CLUSTER_IPS)]);
  chains.push(forward);
  chains.push(
    new ChainDef("filter-output", baseChain("filter", "output", -10))
      .rule([CT_STATUS_DNAT, RETURN])
      .rule([CT_STATE_NEW, jump(CHAIN_SERVICE_ENDPOINTS)])
      .rule([CT_STATE_NEW, jump(CHAIN_CLUSTER_IPS)]),
  );

  // -- nat hooks: DNAT at the standard dstnat priority in prerouting (traffic
  // arriving at the node) and output (traffic the node itself sends);
  // masquerade at srcnat.
  chains.push(new ChainDef("nat-prerouting", baseChain("nat", "prerouting", -100))
    .rule([jump(CHAIN_SERVICES)]));
  chains.push(new ChainDef("nat-output", baseChain("nat", "output", -100))
    .rule([jump(CHAIN_SERVICES)]));
  chains.push(new ChainDef("nat-postrouting", baseChain("nat", "postrouting", 100))
    .rule([jump(CHAIN_MASQUERADING)]));

  // -- reject: TCP gets a RST, everything else ICMP port unreachable.
  chains.push(
    new ChainDef(CHAIN_REJECT, "")
      .rule([match("==", L4PROTO, '"tcp"'), '{"reject":{"type":"tcp reset"}}'])
      .rule(['{"reject":{"type":"icmpx","expr":"port-unreachable"}}']),
  );

  // -- firewall: an LB IP with loadBalancerSourceRanges drops new connections
  // whose source is outside the ranges. One lookup says "this LB IP:port has
  // ranges", the second (interval on the last field) says "source allowed".
  const fw = new ChainDef(CHAIN_FIREWALL, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    fw.rule([
      match("==", vipKey(v6), setRef(mapName(M_FIREWALL_IPS, v6))),
      match(
        "!=",
        concat([daddr(v6), L4PROTO, DPORT, saddr(v6)]),
        setRef(mapName(M_FIREWALL_ALLOW, v6)),
      ),
      DROP,
    ]);
  }
  chains.push(fw);

  // -- no usable endpoints: the map's verdict is drop (Local policy with no
  // local endpoint) or goto reject-chain (no endpoint at all).
  const sep = new ChainDef(CHAIN_SERVICE_ENDPOINTS, "");
  sep.rule([vmap(vipKey(false), mapName(M_NOEP_SERVICES, false))]);
  sep.rule([vmap(vipKey(true), mapName(M_NOEP_SERVICES, true))]);
  chains.push(sep);
  const nep = new ChainDef(CHAIN_NODEPORT_ENDPOINTS, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const r = nodePortDestination(cfg, v6);
    r.unshift(nfproto(v6));
    r.push(vmap(NODEPORT_KEY, mapName(M_NOEP_NODEPORTS, v6)));
    nep.rule(r);
  }
  chains.push(nep);

  // -- traffic to a ClusterIP on a port no service uses, or to an unallocated
  // address of a service CIDR: rejected so clients fail fast.
  const cip = new ChainDef(CHAIN_CLUSTER_IPS, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    cip.rule([match("==", daddr(v6), setRef(mapName(M_CLUSTER_IPS, v6))), goto(CHAIN_REJECT)]);
    cip.rule([match("==", daddr(v6), setRef(mapName(M_SERVICE_CIDRS, v6))), goto(CHAIN_REJECT)]);
  }
  chains.push(cip);

  // -- dispatch: one lookup on destination . protocol . port picks the
  // service's class chain; node ports are looked up by protocol . port for
  // packets addressed to the node itself, after service IPs (an LB IP can be
  // local too).
  const svc = new ChainDef(CHAIN_SERVICES, "");
  svc.rule([vmap(vipKey(false), mapName(M_SERVICE_IPS, false))]);
  svc.rule([vmap(vipKey(true), mapName(M_SERVICE_IPS, true))]);
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const r = nodePortDestination(cfg, v6);
    r.unshift(nfproto(v6));
    r.push(vmap(NODEPORT_KEY, mapName(M_SERVICE_NODEPORTS, v6)));
    svc.rule(r);
  }
  chains.push(svc);

  // -- class chains: what differs between kinds of destination is only whether
  // to masquerade and which endpoint list to use; the list itself is found by
  // a second lookup, so these chains are shared by all services.
  const mark = markMasquerade(masq);
  const clusterip = new ChainDef(CHAIN_CLASS_CLUSTERIP, "");
  if (cfg.masqueradeAll) {
    clusterip.rule([mark]);
  } else {
    // Off-cluster sources are masqueraded so replies return through this node
    // (a static route to the service CIDR may point at any node).
    for (let f = 0; f < 2; f++) {
      const notLocal = localSource(cfg, f == 1, true);
      if (notLocal.length > 0) {
        clusterip.rule(
          cfg.localMode == LOCAL_CIDR ? [notLocal, mark] : [nfproto(f == 1), notLocal, mark],
        );
      }
    }
  }
  addTargetRules(clusterip, false, false);
  chains.push(clusterip);

  // External destinations with the Cluster policy: always masqueraded (the
  // endpoint may be on another node, and the reply must come back here).
  const external = new ChainDef(CHAIN_CLASS_EXTERNAL, "").rule([mark]);
  addTargetRules(external, false, false);
  chains.push(external);
  const nodeport = new ChainDef(CHAIN_CLASS_NODEPORT, "").rule([mark]);
  addTargetRules(nodeport, true, false);
  chains.push(nodeport);

  // External destinations with the Local policy: the client IP is kept and only
  // local endpoints are used, except for traffic from inside the cluster, which
  // is "short-circuited" to the cluster-wide list: pods (detect-local) as they
  // are, the node itself masqueraded (its source address may be the LB IP).
  chains.push(externalLocal(CHAIN_CLASS_EXTERNAL_LOCAL, cfg, mark, false));
  chains.push(externalLocal(CHAIN_CLASS_NODEPORT_LOCAL, cfg, mark, true));

  // -- masquerade what the dispatch marked, then clear the bit so it does not
  // leak to whatever else looks at the mark.
  chains.push(
    new ChainDef(CHAIN_MASQUERADING, "")
      .rule([match("==", '{"&":[' + MARK + "," + masq.toString() + "]}", "0"), RETURN])
      .rule([
        '{"mangle":{"key":' + MARK + ',"value":{"^":[' + MARK + "," + masq.toString() + "]}}}",
      ])
      .rule(['{"masquerade":{"flags":["fully-random"]}}']),
  );
  return chains;
}

function addTargetRules(c: ChainDef, nodePort: bool, shortCircuit: bool): void {
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    if (nodePort) {
      c.rule([
        nfproto(v6),
        vmap(NODEPORT_KEY, mapName(shortCircuit ? M_NP_SC_TARGETS : M_NP_TARGETS, v6)),
      ]);
    } else {
      c.rule([vmap(vipKey(v6), mapName(shortCircuit ? M_VIP_SC_TARGETS : M_VIP_TARGETS, v6))]);
    }
  }
}

function externalLocal(name: string, cfg: Config, mark: string, nodePort: bool): ChainDef {
  const c = new ChainDef(name, "");
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const local = localSource(cfg, v6, false);
    if (local.length == 0) continue;
    const key = nodePort ? NODEPORT_KEY : vipKey(v6);
    const map = mapName(nodePort ? M_NP_SC_TARGETS : M_VIP_SC_TARGETS, v6);
    c.rule([nfproto(v6), local, vmap(key, map)]);
  }
  c.rule([FIB_SADDR_LOCAL, mark]);
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const key = nodePort ? NODEPORT_KEY : vipKey(v6);
    const map = mapName(nodePort ? M_NP_SC_TARGETS : M_VIP_SC_TARGETS, v6);
    c.rule([nfproto(v6), FIB_SADDR_LOCAL, vmap(key, map)]);
  }
  addTargetRules(c, nodePort, false);
  return c;
}
