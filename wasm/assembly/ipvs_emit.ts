// One service's contribution in IPVS mode: its virtual services and real
// servers (as ipvsadm-restore lines), the addresses kube-ipvs0 must hold for
// it, and its nftables elements. Endpoint selection is nftables mode's
// (select.ts); what differs is who acts on it: IPVS picks the real server,
// nftables only decides masquerade, drop and reject.
import { Config, Endpoint, isV6, Service, ServicePort } from "./model";
import { EndpointLists, selectEndpoints } from "./select";
import { countOfFamily, endpointsOfFamily, firstOfFamily, writeFirewallKey } from "./emit";
import {
  CHAIN_IPVS_CLUSTERIP,
  CHAIN_IPVS_EXTERNAL,
  I_CLASSES,
  I_CLUSTER_IPS,
  I_CLUSTER_PORTS,
  I_FIREWALL_ALLOW,
  I_FIREWALL_IPS,
  I_HAIRPIN,
  I_KINDS,
  I_NO_ENDPOINTS,
  ipvsMapDecls,
  ipvsMapId,
} from "./ipvs_layout";
import { CHAIN_REJECT, protoName } from "./names";
import { DROP, goto } from "./expr";
import { PROTO_TCP, PROTO_UDP } from "./abi";
import { ByteWriter } from "./writer";

const REJECT = goto(CHAIN_REJECT);
const TO_CLUSTERIP = goto(CHAIN_IPVS_CLUSTERIP);
const TO_EXTERNAL = goto(CHAIN_IPVS_EXTERNAL);

/**
 * Where elements go: a full plan writes each map's elements straight into
 * one JSON list; a delta keeps them as key -> value to compare a service as
 * last applied with the service now.
 */
export class IPVSSink {
  lists: ByteWriter[] = new Array<ByteWriter>(I_KINDS * 2);
  counts: i32[] = new Array<i32>(I_KINDS * 2);
  elements: Map<string, string>[] = new Array<Map<string, string>>(I_KINDS * 2);
  warnings: string[] = [];
  /** Hairpin pairs already written: the one key that repeats (a pod serving
   *  several services or ports), and a full plan lists each element once. */
  private hairpins: Set<string> = new Set<string>();

  constructor(public delta: bool) {
    for (let m = 0; m < I_KINDS * 2; m++) {
      if (delta) this.elements[m] = new Map<string, string>();
      else this.lists[m] = new ByteWriter(256);
    }
  }

  /** key: the element's JSON; value: a verdict's JSON for maps, "" for sets. */
  element(map: i32, key: string, value: string): void {
    if (this.delta) {
      unchecked(this.elements[map]).set(key, value);
      return;
    }
    if (map == ipvsMapId(I_HAIRPIN, false) || map == ipvsMapId(I_HAIRPIN, true)) {
      if (this.hairpins.has(key)) return;
      this.hairpins.add(key);
    }
    const w = unchecked(this.lists[map]);
    if (unchecked(this.counts[map]) > 0) w.byte(0x2c);
    if (unchecked(ipvsMapDecls()[map]).isMap) {
      w.byte(0x5b).str(key).byte(0x2c).str(value).byte(0x5d);
    } else w.str(key);
    unchecked(this.counts[map] = this.counts[map] + 1);
  }
}

/** `"10.96.0.10","tcp",80,`: a virtual service's key fields, with the trailing comma. */
function vsInner(ip: string, proto: string, port: u16): string {
  return '"' + ip + '","' + proto + '",' + port.toString() + ",";
}

function concatKey(inner: string): string {
  return '{"concat":[' + inner.substring(0, inner.length - 1) + "]}";
}

function hostPort(ip: string, port: u16): string {
  return (isV6(ip) ? "[" + ip + "]" : ip) + ":" + port.toString();
}

/** ipvsadm's service option: `-t 10.96.0.10:80`, `-u [fd00::a]:53`, `--sctp-service ...`. */
export function serviceOption(proto: u8, ip: string, port: u16): string {
  const flag = proto == PROTO_TCP ? "-t " : proto == PROTO_UDP ? "-u " : "--sctp-service ";
  return flag + hostPort(ip, port);
}

/** The virtual services and bound addresses of one service, as ipvsadm-restore text. */
export class IPVSRecord {
  /** Virtual service blocks: the -A line, then its -a lines. */
  blocks: string[] = [];
  keys: Set<string> = new Set<string>();
  binds: Set<string> = new Set<string>();

  constructor(public id: string) {}

  /**
   * Every real server gets weight 1 and masquerading (NAT) forwarding, as
   * kube-proxy programs them: endpoints are pods on other hosts, reached
   * through the node, and their replies come back through its conntrack.
   * ClientIP affinity becomes IPVS persistence with the service's timeout.
   */
  virtualService(opt: string, scheduler: string, persistence: u32, reals: Endpoint[]): bool {
    if (this.keys.has(opt)) return false;
    this.keys.add(opt);
    let block = "-A " + opt + " -s " + scheduler;
    if (persistence > 0) block += " -p " + persistence.toString();
    const lines = new Array<string>();
    for (let i = 0; i < reals.length; i++) {
      const e = unchecked(reals[i]);
      lines.push("-a " + opt + " -r " + hostPort(e.addrString(), e.port) + " -m -w 1");
    }
    lines.sort();
    for (let i = 0; i < lines.length; i++) block += "\n" + lines[i];
    this.blocks.push(block);
    return true;
  }

  /** `svc <id>`, the `bind <address>` lines, then the blocks, each part sorted. */
  text(): string {
    let out = "svc " + this.id;
    const binds = this.binds.values();
    binds.sort();
    for (let i = 0; i < binds.length; i++) out += "\nbind " + binds[i];
    this.blocks.sort();
    for (let i = 0; i < this.blocks.length; i++) out += "\n" + this.blocks[i];
    return out;
  }
}

class PortContext {
  proto: string;
  constructor(
    public svc: Service,
    public port: ServicePort,
    public v6: bool,
    public cfg: Config,
    public sink: IPVSSink,
    public rec: IPVSRecord,
  ) {
    this.proto = protoName(port.proto);
  }
}

export function emitIPVSService(svc: Service, cfg: Config, sink: IPVSSink): IPVSRecord {
  const rec = new IPVSRecord(svc.id);
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    // As in nftables mode: a service is handled in a family only if it has a
    // ClusterIP of that family.
    const cip = firstOfFamily(svc.clusterIPs, v6);
    if (cip.length == 0) continue;
    sink.element(ipvsMapId(I_CLUSTER_IPS, v6), '"' + cip + '"', "");
    // Every service address is bound to kube-ipvs0, so the kernel takes the
    // traffic as local and IPVS sees it in LOCAL_IN. Node IPs already are.
    rec.binds.add(cip);
    for (let i = 0; i < svc.externalIPs.length; i++) {
      if (isV6(unchecked(svc.externalIPs[i])) == v6) rec.binds.add(unchecked(svc.externalIPs[i]));
    }
    for (let i = 0; i < svc.loadBalancerIPs.length; i++) {
      if (isV6(unchecked(svc.loadBalancerIPs[i])) == v6) {
        rec.binds.add(unchecked(svc.loadBalancerIPs[i]));
      }
    }
    for (let i = 0; i < svc.ports.length; i++) {
      emitPort(new PortContext(svc, unchecked(svc.ports[i]), v6, cfg, sink, rec), cip);
    }
  }
  return rec;
}

function emitPort(ctx: PortContext, cip: string): void {
  const svc = ctx.svc;
  const p = ctx.port;
  const v6 = ctx.v6;
  const sink = ctx.sink;
  const nodeIPs = countOfFamily(ctx.cfg.ipvsNodeIPs, v6);
  const external = p.nodePort > 0 || countOfFamily(svc.externalIPs, v6) > 0 ||
    countOfFamily(svc.loadBalancerIPs, v6) > 0;
  // kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints, as in emit.ts.
  const usesCluster = !svc.itpLocal || (!svc.etpLocal && external);
  const usesLocal = svc.itpLocal || (svc.etpLocal && external);
  const lists = selectEndpoints(
    endpointsOfFamily(p.endpoints, v6),
    usesCluster,
    usesLocal,
    ctx.cfg.nodeName,
    ctx.cfg.nodeZone,
  );
  const etpLocal = svc.etpLocal && external;

  // ClusterIP: the internal traffic policy's list.
  const internal = svc.itpLocal ? lists.local : lists.cluster;
  const inner = vsInner(cip, ctx.proto, p.port);
  virtualService(ctx, cip, p.port, internal, lists, svc.itpLocal, TO_CLUSTERIP);
  sink.element(ipvsMapId(I_CLUSTER_PORTS, v6), concatKey(inner), "");

  // External IPs, LB IPs and node ports: the external traffic policy's list.
  // IPVS cannot pick real servers by source, so unlike nftables mode there is
  // no short-circuit of in-cluster sources to all endpoints under eTP=Local:
  // everyone gets the local endpoints, as with kube-proxy's IPVS mode.
  const externalList = etpLocal ? lists.local : lists.cluster;
  const classVerdict = etpLocal ? "" : TO_EXTERNAL;
  const nRanges = countOfFamily(svc.sourceRanges, v6);
  for (let pass = 0; pass < 2; pass++) {
    const isLB = pass == 1;
    const ips = isLB ? svc.loadBalancerIPs : svc.externalIPs;
    for (let i = 0; i < ips.length; i++) {
      const ip = unchecked(ips[i]);
      if (isV6(ip) != v6) continue;
      if (!virtualService(ctx, ip, p.port, externalList, lists, etpLocal, classVerdict)) continue;
      if (isLB && nRanges > 0) firewall(ctx, vsInner(ip, ctx.proto, p.port));
    }
  }
  if (p.nodePort > 0) {
    if (nodeIPs == 0) {
      sink.warnings.push(
        "service " + svc.id + ": node port " + p.nodePort.toString() + "/" + ctx.proto +
          " has no IPv" + (v6 ? "6" : "4") +
          " node address to listen on (IPVS mode needs the Node's addresses)",
      );
    }
    for (let i = 0; i < ctx.cfg.ipvsNodeIPs.length; i++) {
      const ip = unchecked(ctx.cfg.ipvsNodeIPs[i]);
      if (isV6(ip) != v6) continue;
      virtualService(ctx, ip, p.nodePort, externalList, lists, etpLocal, classVerdict);
    }
  }
}

/**
 * One virtual service with its real servers, and its nftables elements:
 * the masquerade class (if any), the verdict for "no usable endpoint", and
 * the hairpin pairs of its local endpoints. Returns false (and warns) for a
 * second virtual service with the same address, protocol and port.
 */
function virtualService(
  ctx: PortContext,
  ip: string,
  port: u16,
  reals: Endpoint[],
  lists: EndpointLists,
  localPolicy: bool,
  classVerdict: string,
): bool {
  const opt = serviceOption(ctx.port.proto, ip, port);
  if (!ctx.rec.virtualService(opt, ctx.cfg.ipvsScheduler, ctx.svc.affinitySeconds, reals)) {
    ctx.sink.warnings.push(
      "service " + ctx.svc.id + ": virtual service " + opt +
        " is listed twice; kept once",
    );
    return false;
  }
  const v6 = ctx.v6;
  const key = concatKey(vsInner(ip, ctx.proto, port));
  if (classVerdict.length > 0) ctx.sink.element(ipvsMapId(I_CLASSES, v6), key, classVerdict);
  if (reals.length == 0) {
    // Local policy with endpoints elsewhere only: drop (a load balancer's
    // health check steers traffic away); no endpoint at all: reject.
    ctx.sink.element(
      ipvsMapId(I_NO_ENDPOINTS, v6),
      key,
      localPolicy && lists.hasAny ? DROP : REJECT,
    );
  }
  for (let i = 0; i < reals.length; i++) {
    const e = unchecked(reals[i]);
    if (!e.local) continue;
    const a = e.addrString();
    ctx.sink.element(ipvsMapId(I_HAIRPIN, v6), '{"concat":["' + a + '","' + a + '"]}', "");
  }
  return true;
}

function firewall(ctx: PortContext, inner: string): void {
  const v6 = ctx.v6;
  ctx.sink.element(ipvsMapId(I_FIREWALL_IPS, v6), concatKey(inner), "");
  // The host hands over non-overlapping ranges (an interval set rejects
  // overlaps), already including the LB IPs when a range covers a node IP.
  const w = new ByteWriter(64);
  const ranges = ctx.svc.sourceRanges;
  for (let r = 0; r < ranges.length; r++) {
    const range = unchecked(ranges[r]);
    if (isV6(range) != v6) continue;
    w.reset();
    writeFirewallKey(w, inner, range);
    ctx.sink.element(ipvsMapId(I_FIREWALL_ALLOW, v6), w.toString(), "");
  }
}
