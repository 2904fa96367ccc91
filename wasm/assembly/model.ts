// The decoded planner input: the host's normalised picture of the cluster.
import {
  ABI_VERSION,
  DELTA_HAS_NEW,
  DELTA_HAS_OLD,
  EP_READY,
  EP_SERVING,
  EP_TERMINATING,
  INPUT_MAGIC,
  MODE_DELTA,
  MODE_FULL,
  MODE_FULL_HEAD,
  MODE_FULL_PART,
  SVC_ETP_LOCAL,
  SVC_ITP_LOCAL,
} from "./abi";
import { Reader } from "./reader";

/**
 * An endpoint, decoded without allocating more than the object itself: the
 * address stays in the input buffer (it is only ever copied to the output),
 * and the node name and hints are reduced to what the planner asks of them.
 */
export class Endpoint {
  /** Where the address's bytes are in the input buffer. */
  addrPtr: usize;
  addrLen: u32;
  v6: bool = false;
  port: u16 = 0;
  ready: bool = false;
  serving: bool = false;
  terminating: bool = false;
  /** nodeName is this node's name. */
  local: bool = false;
  /** Zone hints: 0 none, 1 some but not this node's zone, 3 includes it. */
  zoneHints: u8 = 0;
  /** Node hints (PreferSameNode), same encoding. */
  nodeHints: u8 = 0;

  constructor(addrPtr: usize, addrLen: u32) {
    this.addrPtr = addrPtr;
    this.addrLen = addrLen;
    for (let i: u32 = 0; i < addrLen; i++) if (load<u8>(addrPtr + i) == 0x3a) this.v6 = true;
  }

  addrString(): string {
    return String.UTF8.decodeUnsafe(this.addrPtr, <usize> this.addrLen);
  }
}

export class ServicePort {
  name: string = "";
  proto: u8 = 0;
  port: u16 = 0;
  nodePort: u16 = 0;
  endpoints: Endpoint[] = [];
}

export class Service {
  id: string = "";
  etpLocal: bool = false;
  itpLocal: bool = false;
  affinitySeconds: u32 = 0;
  clusterIPs: string[] = [];
  externalIPs: string[] = [];
  loadBalancerIPs: string[] = [];
  sourceRanges: string[] = [];
  ports: ServicePort[] = [];
}

export class Config {
  masqueradeMark: u32 = 0x4000;
  masqueradeAll: bool = false;
  dropInvalid: bool = true;
  localMode: u8 = 0;
  localCIDRs: string[] = [];
  localInterface: string = "";
  nodePortAddressesListed: bool = false;
  nodePortAddresses: string[] = [];
  serviceCIDRs: string[] = [];
  nodeName: string = "";
  nodeZone: string = "";
  /** IPVS mode: the scheduler of every virtual service ("" in nftables mode). */
  ipvsScheduler: string = "";
  /** IPVS mode: node addresses that get node-port virtual services. */
  ipvsNodeIPs: string[] = [];
}

/** What is in the kernel. A full plan gets all of it; a delta only the shared
 *  chains its endpoint lists can use (no sets). */
export class Inventory {
  layout: u32 = 0;
  chains: string[] = [];
  sets: string[] = [];
}

/** One entry of a delta: the service as last applied and as it is now. */
export class ServiceChange {
  old: Service | null = null;
  now: Service | null = null;
}

export class PlanInput {
  mode: u8 = 0;
  generation: u32 = 0;
  config: Config = new Config();
  inventory: Inventory = new Inventory();
  services: Service[] = [];
  changes: ServiceChange[] = [];
  /** MODE_FULL_HEAD: what the parts reported (see batch.ts#planFullHead). */
  partAdded: string[] = [];
  partSets: string[] = [];
  partShared: u32[] = [];
}

export function isV6(addr: string): bool {
  return addr.indexOf(":") >= 0;
}

function readService(r: Reader, cfg: Config): Service {
  const s = new Service();
  s.id = r.str();
  const flags = r.u8();
  s.etpLocal = (flags & SVC_ETP_LOCAL) != 0;
  s.itpLocal = (flags & SVC_ITP_LOCAL) != 0;
  s.affinitySeconds = r.u32();
  s.clusterIPs = r.strs();
  s.externalIPs = r.strs();
  s.loadBalancerIPs = r.strs();
  s.sourceRanges = r.strs();
  const nports = r.count(9);
  for (let i = 0; i < nports; i++) {
    const p = new ServicePort();
    p.name = r.str();
    p.proto = r.u8();
    p.port = r.u16();
    p.nodePort = r.u16();
    const neps = r.count(15);
    p.endpoints = new Array<Endpoint>(neps);
    for (let j = 0; j < neps; j++) {
      const len = r.u32();
      const e = new Endpoint(r.skip(len), len);
      e.port = r.u16();
      const ef = r.u8();
      e.ready = (ef & EP_READY) != 0;
      e.serving = (ef & EP_SERVING) != 0;
      e.terminating = (ef & EP_TERMINATING) != 0;
      e.local = r.strEquals(cfg.nodeName);
      e.zoneHints = r.listHas(cfg.nodeZone);
      e.nodeHints = r.listHas(cfg.nodeName);
      unchecked(p.endpoints[j] = e);
    }
    s.ports.push(p);
  }
  return s;
}

export function readInput(ptr: usize, len: usize): PlanInput {
  const r = new Reader(ptr, ptr + len);
  if (r.u32() != INPUT_MAGIC) abort("planner input: bad magic");
  if (r.u32() != ABI_VERSION) abort("planner input: ABI version mismatch");
  const input = new PlanInput();
  input.mode = r.u8();
  input.generation = r.u32();
  const c = input.config;
  c.masqueradeMark = r.u32();
  c.masqueradeAll = r.bool();
  c.dropInvalid = r.bool();
  c.localMode = r.u8();
  c.localCIDRs = r.strs();
  c.localInterface = r.str();
  c.nodePortAddressesListed = r.bool();
  c.nodePortAddresses = r.strs();
  c.serviceCIDRs = r.strs();
  c.nodeName = r.str();
  c.nodeZone = r.str();
  c.ipvsScheduler = r.str();
  c.ipvsNodeIPs = r.strs();
  input.inventory.layout = r.u32();
  input.inventory.chains = r.strs();
  input.inventory.sets = r.strs();
  const n = r.count(1);
  if (input.mode == MODE_FULL || input.mode == MODE_FULL_PART) {
    input.services = new Array<Service>(n);
    for (let i = 0; i < n; i++) unchecked(input.services[i] = readService(r, c));
  } else if (input.mode == MODE_DELTA) {
    for (let i = 0; i < n; i++) {
      const ch = new ServiceChange();
      const f = r.u8();
      if ((f & DELTA_HAS_OLD) != 0) ch.old = readService(r, c);
      if ((f & DELTA_HAS_NEW) != 0) ch.now = readService(r, c);
      input.changes.push(ch);
    }
  } else if (input.mode == MODE_FULL_HEAD) {
    // A head plans no services itself: the parts did.
    if (n != 0) abort("planner input: a head with services");
    input.partAdded = r.strs();
    input.partSets = r.strs();
    input.partShared = r.u32s();
  } else {
    abort("planner input: unknown mode");
  }
  if (r.ptr != r.end) abort("planner input: trailing bytes");
  return input;
}
