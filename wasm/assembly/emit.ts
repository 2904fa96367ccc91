// One service's contribution to the table: map and set elements, and for
// services with ClientIP affinity a few chains and per-endpoint sets. This is
// the hot path of a full plan (every endpoint of every service passes here),
// so keys and values are written straight into the sink's writer and the
// strings that repeat (verdicts) are built once.
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
import { ByteWriter } from "./writer";

const REJECT = goto(CHAIN_REJECT);
const TO_CLUSTERIP = goto(CHAIN_CLASS_CLUSTERIP);
const TO_EXTERNAL = goto(CHAIN_CLASS_EXTERNAL);
const TO_EXTERNAL_LOCAL = goto(CHAIN_CLASS_EXTERNAL_LOCAL);
const TO_NODEPORT = goto(CHAIN_CLASS_NODEPORT);
const TO_NODEPORT_LOCAL = goto(CHAIN_CLASS_NODEPORT_LOCAL);

/** goto verdicts of the shared pick/slot chains, by (path, uniform, n). */
const pickVerdicts = new Map<i32, string>();

function pickVerdict(path: i32, uniform: bool, n: i32): string {
  const k = (((path << 1) | (uniform ? 1 : 0)) << 24) | n;
  if (pickVerdicts.has(k)) return pickVerdicts.get(k);
  const v = goto(n == 1 ? slotChain(path, uniform, 0) : pickChain(path, uniform, n));
  pickVerdicts.set(k, v);
  return v;
}

export function firstOfFamily(addrs: string[], v6: bool): string {
  for (let i = 0; i < addrs.length; i++) {
    if (isV6(unchecked(addrs[i])) == v6) return unchecked(addrs[i]);
  }
  return "";
}

export function countOfFamily(addrs: string[], v6: bool): i32 {
  let n = 0;
  for (let i = 0; i < addrs.length; i++) if (isV6(unchecked(addrs[i])) == v6) n++;
  return n;
}

/** The endpoints of one family; the port's own array when all are of it. */
export function endpointsOfFamily(eps: Endpoint[], v6: bool): Endpoint[] {
  let all = true;
  for (let i = 0; i < eps.length; i++) if (unchecked(eps[i]).v6 != v6) all = false;
  if (all) return eps;
  const out = new Array<Endpoint>();
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    if (e.v6 == v6) out.push(e);
  }
  return out;
}

/** Everything needed to emit one service port in one IP family. */
class PortContext {
  proto: string;
  constructor(
    public svc: Service,
    public port: ServicePort,
    public v6: bool,
    public cfg: Config,
    public sink: Sink,
    public lists: EndpointLists,
    public etpLocal: bool,
  ) {
    this.proto = protoName(port.proto);
  }
}

/** `"10.96.0.10","tcp",80,` — a service-IP key up to (and including the comma before) the slot. */
function vipInner(ip: string, proto: string, port: u16): string {
  return '"' + ip + '","' + proto + '",' + port.toString() + ",";
}

function npInner(proto: string, port: u16): string {
  return '"' + proto + '",' + port.toString() + ",";
}

/** Writes `{"concat":[<inner without its trailing comma>]}`. */
function writeKey(w: ByteWriter, inner: string): void {
  w.str('{"concat":[').str(inner);
  w.len -= 1;
  w.str("]}");
}

function element(sink: Sink, map: i32, inner: string, value: string): void {
  sink.begin(map);
  writeKey(sink.w, inner);
  if (value.length > 0) {
    sink.value();
    sink.w.str(value);
  }
  sink.end();
}

export function emitService(svc: Service, cfg: Config, sink: Sink): void {
  for (let f = 0; f < 2; f++) {
    const cip = firstOfFamily(svc.clusterIPs, f == 1);
    if (cip.length == 0) continue;
    sink.begin(mapId(M_CLUSTER_IPS, f == 1));
    sink.w.byte(0x22).str(cip).byte(0x22);
    sink.end();
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
  const cip = firstOfFamily(svc.clusterIPs, v6);
  if (cip.length == 0) return;
  const nExt = countOfFamily(svc.externalIPs, v6);
  const nLB = countOfFamily(svc.loadBalancerIPs, v6);
  const external = p.nodePort > 0 || nExt > 0 || nLB > 0;
  const usesCluster = !svc.itpLocal || (!svc.etpLocal && external);
  const usesLocal = svc.itpLocal || (svc.etpLocal && external);
  const lists = selectEndpoints(
    endpointsOfFamily(p.endpoints, v6),
    usesCluster,
    usesLocal,
    cfg.nodeName,
    cfg.nodeZone,
  );
  const ctx = new PortContext(svc, p, v6, cfg, sink, lists, svc.etpLocal && external);

  // ClusterIP: internal traffic uses the internal policy's list.
  const internal = svc.itpLocal ? lists.local : lists.cluster;
  const inner = vipInner(cip, ctx.proto, p.port);
  if (internal.length > 0) {
    element(sink, mapId(M_SERVICE_IPS, v6), inner, TO_CLUSTERIP);
    target(ctx, mapId(M_VIP_TARGETS, v6), inner, internal, PATH_VIP, svc.itpLocal);
  } else {
    // iTP=Local with endpoints elsewhere only: drop; no endpoints at all: reject.
    element(sink, mapId(M_NOEP_SERVICES, v6), inner, lists.hasAny ? DROP : REJECT);
  }

  const ranges = svc.sourceRanges;
  const nRanges = countOfFamily(ranges, v6);
  for (let pass = 0; pass < 2; pass++) {
    const isLB = pass == 1;
    const ips = isLB ? svc.loadBalancerIPs : svc.externalIPs;
    for (let i = 0; i < ips.length; i++) {
      const ip = unchecked(ips[i]);
      if (isV6(ip) != v6) continue;
      const vinner = vipInner(ip, ctx.proto, p.port);
      externalDestination(ctx, vinner, false);
      if (isLB && nRanges > 0) {
        element(sink, mapId(M_FIREWALL_IPS, v6), vinner, "");
        // The host hands over non-overlapping ranges (an interval set rejects
        // overlaps), already including the LB IPs when a range covers a node IP.
        for (let r = 0; r < ranges.length; r++) {
          const range = unchecked(ranges[r]);
          if (isV6(range) != v6) continue;
          sink.begin(mapId(M_FIREWALL_ALLOW, v6));
          writeFirewallKey(sink.w, vinner, range);
          sink.end();
        }
      }
    }
  }
  if (p.nodePort > 0) externalDestination(ctx, npInner(ctx.proto, p.nodePort), true);
}

export function writeFirewallKey(w: ByteWriter, inner: string, range: string): void {
  w.str('{"concat":[').str(inner);
  const slash = range.indexOf("/");
  if (slash < 0) {
    w.byte(0x22).str(range).byte(0x22);
  } else {
    w.str('{"prefix":{"addr":"').str(range.substring(0, slash)).str('","len":')
      .str(range.substring(slash + 1)).str("}}");
  }
  w.str("]}");
}

/** External IPs, LB IPs and node ports: the external traffic policy applies. */
function externalDestination(ctx: PortContext, inner: string, nodePort: bool): void {
  const v6 = ctx.v6;
  const sink = ctx.sink;
  const dispatch = mapId(nodePort ? M_SERVICE_NODEPORTS : M_SERVICE_IPS, v6);
  const noEndpoints = mapId(nodePort ? M_NOEP_NODEPORTS : M_NOEP_SERVICES, v6);
  const targets = mapId(nodePort ? M_NP_TARGETS : M_VIP_TARGETS, v6);
  const cluster = ctx.lists.cluster;
  const local = ctx.lists.local;
  if (!ctx.etpLocal) {
    if (cluster.length > 0) {
      element(sink, dispatch, inner, nodePort ? TO_NODEPORT : TO_EXTERNAL);
      target(ctx, targets, inner, cluster, nodePort ? PATH_NODEPORT : PATH_VIP, false);
    } else {
      element(sink, noEndpoints, inner, REJECT);
    }
    return;
  }
  if (cluster.length > 0 || local.length > 0) {
    element(sink, dispatch, inner, nodePort ? TO_NODEPORT_LOCAL : TO_EXTERNAL_LOCAL);
  }
  if (local.length > 0) {
    target(ctx, targets, inner, local, nodePort ? PATH_NODEPORT : PATH_VIP, true);
  } else {
    // eTP=Local with no local endpoint: external clients are dropped (the LB
    // health check steers them elsewhere); with no endpoint anywhere, reject.
    element(sink, noEndpoints, inner, ctx.lists.hasAny ? DROP : REJECT);
  }
  if (cluster.length > 0) {
    const sc = mapId(nodePort ? M_NP_SC_TARGETS : M_VIP_SC_TARGETS, v6);
    target(ctx, sc, inner, cluster, nodePort ? PATH_NODEPORT_SC : PATH_VIP_SC, false);
  }
}

/**
 * Points the key `inner` in the verdict map `targets` at the endpoint list
 * `eps`: through the shared pick/slot chains with the list as map elements,
 * or, for ClientIP affinity, through the service port's affinity chain.
 */
function target(
  ctx: PortContext,
  targets: i32,
  inner: string,
  eps: Endpoint[],
  path: i32,
  localList: bool,
): void {
  const sink = ctx.sink;
  if (ctx.svc.affinitySeconds > 0) {
    element(sink, targets, inner, goto(affinityChains(ctx, eps, localList)));
    return;
  }
  const n = eps.length;
  let uniform = true;
  for (let i = 1; i < n; i++) {
    if (unchecked(eps[i]).port != unchecked(eps[0]).port) uniform = false;
  }
  element(sink, targets, inner, pickVerdict(path, uniform, n));
  sink.useList(path, uniform, n);

  const np = isNodePortPath(path);
  const v6 = ctx.v6;
  const addrs = mapId(np ? M_NP_ADDRS : M_VIP_ADDRS, v6);
  const ports = mapId(np ? M_NP_PORTS : M_VIP_PORTS, v6);
  const hairpin = mapId(np ? M_NP_HAIRPIN : M_VIP_HAIRPIN, v6);
  for (let i = 0; i < n; i++) {
    const e = unchecked(eps[i]);
    const idx = slotIndex(path, <u32> i);
    sink.begin(addrs);
    sink.w.str('{"concat":[').str(inner).uint(idx).str("]}");
    sink.value();
    sink.w.byte(0x22).raw(e.addrPtr, e.addrLen).byte(0x22);
    sink.end();
    if (!uniform) {
      sink.begin(ports);
      sink.w.str('{"concat":[').str(inner).uint(idx).str("]}");
      sink.value();
      sink.w.uint(e.port);
      sink.end();
    }
    if (e.local) {
      sink.begin(hairpin);
      sink.w.str('{"concat":["').raw(e.addrPtr, e.addrLen).str('",').str(inner).uint(idx)
        .str("]}");
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
  // nft only accepts a DNAT port after a transport protocol match.
  const proto = match("==", L4PROTO, '"' + ctx.proto + '"');
  const sticky = new ChainDef(stickyName, "");
  const pick = new ChainDef(pickName, "");
  const n = eps.length;
  for (let i = 0; i < n; i++) {
    const e = unchecked(eps[i]);
    const addr = e.addrString();
    const setName = "affinity-ep-" +
      hash64(
        svc.id + "|" + p.name + "|" + ctx.proto + "|" + addr + "|" + e.port.toString() +
          "|" + timeout,
      );
    ctx.sink.set(
      new SetDef(
        setName,
        '"type":' + (v6 ? '"ipv6_addr"' : '"ipv4_addr"') + ',"flags":["timeout"],"timeout":' +
          timeout,
      ),
    );
    const known = match("==", sa, setRef(setName));
    const refresh = '{"set":{"op":"update","elem":' + sa + ',"set":' + setRef(setName) + "}}";
    const dnat = '{"dnat":{"family":"' + natFamily(v6) + '","addr":"' + addr + '","port":' +
      e.port.toString() + "}}";
    if (e.local) {
      // Hairpin: the endpoint itself is the client.
      sticky.rule([
        proto,
        match("==", sa, '"' + addr + '"'),
        known,
        refresh,
        markMasquerade(ctx.cfg.masqueradeMark),
        dnat,
      ]);
    }
    sticky.rule([proto, known, refresh, dnat]);
    // Rule i is reached with probability (n-i)/n and matches with 1/(n-i):
    // each endpoint is drawn with probability 1/n.
    if (i < n - 1) {
      pick.rule([
        match(
          "==",
          '{"numgen":{"mode":"random","mod":' + (n - i).toString() + ',"offset":0}}',
          "0",
        ),
        refresh,
        goto(stickyName),
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
