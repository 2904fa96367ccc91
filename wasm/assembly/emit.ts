// One service's contribution to the table: map and set elements, and for
// services with ClientIP affinity a few chains and per-endpoint sets.
import { Config, Endpoint, isV6, Service, ServicePort } from "./model";
import { EndpointLists, selectEndpoints } from "./select";
import { SetDef, Sink } from "./sink";
import {
  ChainDef,
  M_CLUSTER_IPS,
  M_FIREWALL_ALLOW,
  M_FIREWALL_IPS,
  M_NOEP_NODEPORTS,
  M_NOEP_SERVICES,
  M_NP_ADDRS,
  M_NP_HAIRPIN,
  M_NP_PORTS,
  M_NP_SC_TARGETS,
  M_NP_TARGETS,
  M_SERVICE_IPS,
  M_SERVICE_NODEPORTS,
  M_VIP_ADDRS,
  M_VIP_HAIRPIN,
  M_VIP_PORTS,
  M_VIP_SC_TARGETS,
  M_VIP_TARGETS,
  mapId,
} from "./layout";
import {
  ANY_SLOT,
  CHAIN_CLASS_CLUSTERIP,
  CHAIN_CLASS_EXTERNAL,
  CHAIN_CLASS_EXTERNAL_LOCAL,
  CHAIN_CLASS_NODEPORT,
  CHAIN_CLASS_NODEPORT_LOCAL,
  CHAIN_REJECT,
  hash64,
  isNodePortPath,
  PATH_NODEPORT,
  PATH_NODEPORT_SC,
  PATH_VIP,
  PATH_VIP_SC,
  pickChain,
  protoName,
  readablePort,
  slotChain,
  slotIndex,
} from "./names";
import { DROP, goto, jump, L4PROTO, markMasquerade, match, natFamily, saddr, setRef } from "./expr";

const REJECT = goto(CHAIN_REJECT);

function ofFamily(addrs: string[], v6: bool): string[] {
  const out = new Array<string>();
  for (let i = 0; i < addrs.length; i++) {
    const a = unchecked(addrs[i]);
    if (isV6(a) == v6) out.push(a);
  }
  return out;
}

function endpointsOfFamily(eps: Endpoint[], v6: bool): Endpoint[] {
  const out = new Array<Endpoint>();
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    if (e.v6 == v6) out.push(e);
  }
  return out;
}

/** Everything needed to emit one service port in one IP family. */
class PortContext {
  svc: Service;
  port: ServicePort;
  v6: bool;
  cfg: Config;
  sink: Sink;
  proto: string;
  lists: EndpointLists;
  etpLocal: bool;

  constructor(svc: Service, port: ServicePort, v6: bool, cfg: Config, sink: Sink,
    lists: EndpointLists, etpLocal: bool) {
    this.svc = svc;
    this.port = port;
    this.v6 = v6;
    this.cfg = cfg;
    this.sink = sink;
    this.proto = protoName(port.proto);
    this.lists = lists;
    this.etpLocal = etpLocal;
  }

  isLocal(e: Endpoint): bool {
    return e.nodeName.length > 0 && e.nodeName == this.cfg.nodeName;
  }
}

/** `"10.96.0.10","tcp",80,` — the part of a service-IP key before the slot. */
function vipInner(ip: string, proto: string, port: u16): string {
  return '"' + ip + '","' + proto + '",' + port.toString() + ",";
}

function npInner(proto: string, port: u16): string {
  return '"' + proto + '",' + port.toString() + ",";
}

function keyOf(inner: string): string {
  // inner ends with a comma meant for the slot; a plain key drops it.
  return '{"concat":[' + inner.substring(0, inner.length - 1) + "]}";
}

export function emitService(svc: Service, cfg: Config, sink: Sink): void {
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const cips = ofFamily(svc.clusterIPs, v6);
    if (cips.length == 0) continue;
    sink.element(mapId(M_CLUSTER_IPS, v6), '"' + cips[0] + '"', "");
  }
  for (let i = 0; i < svc.ports.length; i++) {
    const p = unchecked(svc.ports[i]);
    emitPort(svc, p, false, cfg, sink);
    emitPort(svc, p, true, cfg, sink);
  }
}

function emitPort(svc: Service, p: ServicePort, v6: bool, cfg: Config, sink: Sink): void {
  // Like kube-proxy's per-family proxiers: a service is handled in a family only
  // if it has a ClusterIP of that family.
  const cips = ofFamily(svc.clusterIPs, v6);
  if (cips.length == 0) return;
  const cip = cips[0];
  const ext = ofFamily(svc.externalIPs, v6);
  const lbs = ofFamily(svc.loadBalancerIPs, v6);
  const external = p.nodePort > 0 || ext.length > 0 || lbs.length > 0;
  const usesCluster = !svc.itpLocal || (!svc.etpLocal && external);
  const usesLocal = svc.itpLocal || (svc.etpLocal && external);
  const lists = selectEndpoints(
    endpointsOfFamily(p.endpoints, v6), usesCluster, usesLocal, cfg.nodeName, cfg.nodeZone,
  );
  const ctx = new PortContext(svc, p, v6, cfg, sink, lists, svc.etpLocal && external);

  // ClusterIP: internal traffic uses the internal policy's list.
  const internal = svc.itpLocal ? lists.local : lists.cluster;
  const inner = vipInner(cip, ctx.proto, p.port);
  const key = keyOf(inner);
  if (internal.length > 0) {
    sink.element(mapId(M_SERVICE_IPS, v6), key, goto(CHAIN_CLASS_CLUSTERIP));
    target(ctx, mapId(M_VIP_TARGETS, v6), key, inner, internal, PATH_VIP, svc.itpLocal);
  } else {
    // iTP=Local with endpoints elsewhere only: drop; no endpoints at all: reject.
    sink.element(mapId(M_NOEP_SERVICES, v6), key, lists.hasAny ? DROP : REJECT);
  }

  const ranges = ofFamily(svc.sourceRanges, v6);
  for (let i = 0; i < ext.length + lbs.length; i++) {
    const isLB = i >= ext.length;
    const ip = isLB ? lbs[i - ext.length] : ext[i];
    const vinner = vipInner(ip, ctx.proto, p.port);
    const vkey = keyOf(vinner);
    externalDestination(ctx, vkey, vinner, false);
    if (isLB && ranges.length > 0) {
      sink.element(mapId(M_FIREWALL_IPS, v6), vkey, "");
      // The host hands over non-overlapping ranges (an interval set rejects
      // overlaps), already including the LB IPs when a range covers a node IP.
      for (let r = 0; r < ranges.length; r++) {
        sink.element(mapId(M_FIREWALL_ALLOW, v6), firewallKey(vinner, ranges[r]), "");
      }
    }
  }
  if (p.nodePort > 0) {
    const ninner = npInner(ctx.proto, p.nodePort);
    externalDestination(ctx, keyOf(ninner), ninner, true);
  }
}

function firewallKey(inner: string, range: string): string {
  const slash = range.indexOf("/");
  const r = slash < 0
    ? '"' + range + '"'
    : '{"prefix":{"addr":"' + range.substring(0, slash) + '","len":' + range.substring(slash + 1) + "}}";
  return '{"concat":[' + inner + r + "]}";
}

/** External IPs, LB IPs and node ports: the external traffic policy applies. */
function externalDestination(ctx: PortContext, key: string, inner: string, nodePort: bool): void {
  const v6 = ctx.v6;
  const sink = ctx.sink;
  const dispatch = mapId(nodePort ? M_SERVICE_NODEPORTS : M_SERVICE_IPS, v6);
  const noEndpoints = mapId(nodePort ? M_NOEP_NODEPORTS : M_NOEP_SERVICES, v6);
  const targets = mapId(nodePort ? M_NP_TARGETS : M_VIP_TARGETS, v6);
  const cluster = ctx.lists.cluster;
  const local = ctx.lists.local;
  if (!ctx.etpLocal) {
    if (cluster.length > 0) {
      sink.element(dispatch, key, goto(nodePort ? CHAIN_CLASS_NODEPORT : CHAIN_CLASS_EXTERNAL));
      target(ctx, targets, key, inner, cluster, nodePort ? PATH_NODEPORT : PATH_VIP, false);
    } else {
      sink.element(noEndpoints, key, REJECT);
    }
    return;
  }
  if (cluster.length > 0 || local.length > 0) {
    sink.element(
      dispatch, key, goto(nodePort ? CHAIN_CLASS_NODEPORT_LOCAL : CHAIN_CLASS_EXTERNAL_LOCAL),
    );
  }
  if (local.length > 0) {
    target(ctx, targets, key, inner, local, nodePort ? PATH_NODEPORT : PATH_VIP, true);
  } else {
    // eTP=Local with no local endpoint: external clients are dropped (the LB
    // health check steers them elsewhere); with no endpoint anywhere, reject.
    sink.element(noEndpoints, key, ctx.lists.hasAny ? DROP : REJECT);
  }
  if (cluster.length > 0) {
    const sc = mapId(nodePort ? M_NP_SC_TARGETS : M_VIP_SC_TARGETS, v6);
    target(ctx, sc, key, inner, cluster, nodePort ? PATH_NODEPORT_SC : PATH_VIP_SC, false);
  }
}

/**
 * Points `key` in the verdict map `targets` at the endpoint list `eps`:
 * through the shared pick/slot chains with the list as map elements, or, for
 * ClientIP affinity, through the service port's affinity chain.
 */
function target(ctx: PortContext, targets: i32, key: string, inner: string, eps: Endpoint[],
  path: i32, localList: bool): void {
  const sink = ctx.sink;
  if (ctx.svc.affinitySeconds > 0) {
    sink.element(targets, key, goto(affinityChains(ctx, eps, localList)));
    return;
  }
  const n = eps.length;
  let uniform = true;
  for (let i = 1; i < n; i++) {
    if (unchecked(eps[i]).port != unchecked(eps[0]).port) uniform = false;
  }
  const chain = n == 1 ? slotChain(path, uniform, 0) : pickChain(path, uniform, n);
  sink.element(targets, key, goto(chain));
  if (n > 1) sink.shared.add(chain);
  for (let i = 0; i < n; i++) sink.shared.add(slotChain(path, uniform, i));

  const np = isNodePortPath(path);
  const v6 = ctx.v6;
  const addrs = mapId(np ? M_NP_ADDRS : M_VIP_ADDRS, v6);
  const ports = mapId(np ? M_NP_PORTS : M_VIP_PORTS, v6);
  const hairpin = mapId(np ? M_NP_HAIRPIN : M_VIP_HAIRPIN, v6);
  for (let i = 0; i < n; i++) {
    const e = unchecked(eps[i]);
    const idx = slotIndex(path, <u32>i);
    sink.begin(addrs);
    sink.w.str('{"concat":[').str(inner).uint(idx).str("]}");
    sink.value();
    sink.w.byte(0x22).str(e.addr).byte(0x22);
    sink.end();
    if (!uniform) {
      sink.begin(ports);
      sink.w.str('{"concat":[').str(inner).uint(idx).str("]}");
      sink.value();
      sink.w.uint(e.port);
      sink.end();
    }
    if (ctx.isLocal(e)) {
      sink.begin(hairpin);
      sink.w.str('{"concat":["').str(e.addr).str('",').str(inner).uint(idx).str("]}");
      sink.end();
    }
  }
  if (uniform) {
    sink.begin(ports);
    sink.w.str('{"concat":[').str(inner).uint(slotIndex(path, ANY_SLOT)).str("]}");
    sink.value();
    sink.w.uint(unchecked(eps[0]).port);
    sink.end();
  }
}

/**
 * ClientIP affinity for one service port, family and list, kube-proxy style:
 * one dynamic set of client addresses per endpoint (with the service's timeout,
 * refreshed on each new connection), a "sticky" chain that sends a known
 * client back to its endpoint, and a "pick" chain that draws an endpoint for a
 * new client, records it and re-enters the sticky chain. Rules grow with the
 * endpoints of affinity services only; their sets survive resyncs, so clients
 * stay sticky across kpx restarts.
 */
function affinityChains(ctx: PortContext, eps: Endpoint[], localList: bool): string {
  const svc = ctx.svc;
  const p = ctx.port;
  const v6 = ctx.v6;
  const id = svc.id + "|" + p.name + "|" + ctx.proto + "|" + (v6 ? "6" : "4") +
    (localList ? "|local" : "|cluster");
  const h = hash64(id);
  const readable = readablePort(svc.id, p.name, p.proto);
  const suffix = (localList ? "-l" : "-c") + (v6 ? "6-" : "4-") + readable;
  const entryName = "affinity-" + h + suffix;
  if (ctx.sink.chainNames.has(entryName)) return entryName;
  const stickyName = "affinity-sticky-" + h + suffix;
  const pickName = "affinity-pick-" + h + suffix;

  const timeout = svc.affinitySeconds.toString();
  const sa = saddr(v6);
  const sticky = new ChainDef(stickyName, "");
  const pick = new ChainDef(pickName, "");
  const n = eps.length;
  for (let i = 0; i < n; i++) {
    const e = unchecked(eps[i]);
    const setName = "affinity-ep-" +
      hash64(svc.id + "|" + p.name + "|" + ctx.proto + "|" + e.addr + "|" + e.port.toString() +
        "|" + timeout);
    ctx.sink.set(new SetDef(
      setName,
      '"type":' + (v6 ? '"ipv6_addr"' : '"ipv4_addr"') + ',"flags":["timeout"],"timeout":' + timeout,
    ));
    const known = match("==", sa, setRef(setName));
    const refresh = '{"set":{"op":"update","elem":' + sa + ',"set":' + setRef(setName) + "}}";
    const dnat = '{"dnat":{"family":"' + natFamily(v6) + '","addr":"' + e.addr + '","port":' +
      e.port.toString() + "}}";
    // nft only accepts a DNAT port after a transport protocol match.
    const proto = match("==", L4PROTO, '"' + ctx.proto + '"');
    if (ctx.isLocal(e)) {
      // Hairpin: the endpoint itself is the client.
      sticky.rule([
        proto, match("==", sa, '"' + e.addr + '"'), known, refresh,
        markMasquerade(ctx.cfg.masqueradeMark), dnat,
      ]);
    }
    sticky.rule([proto, known, refresh, dnat]);
    // Rule i is reached with probability (n-i)/n and matches with 1/(n-i):
    // each endpoint is drawn with probability 1/n.
    if (i < n - 1) {
      pick.rule([
        match("==", '{"numgen":{"mode":"random","mod":' + (n - i).toString() + ',"offset":0}}', "0"),
        refresh, goto(stickyName),
      ]);
    } else {
      pick.rule([refresh, goto(stickyName)]);
    }
  }
  const entry = new ChainDef(entryName, "")
    .rule([jump(stickyName)])
    .rule([goto(pickName)]);
  ctx.sink.chain(sticky);
  ctx.sink.chain(pick);
  ctx.sink.chain(entry);
  return entryName;
}
