// IPVS mode's plan: the nftables batch (full: the whole table; delta: element
// changes of the changed services) and the IPVS records of the services it
// covers (full: all of them; delta: the changed ones, as they are now).
import { ByteWriter } from "./writer";
import { isV6, PlanInput, Service } from "./model";
import { Commands, PlanResult } from "./batch";
import { emitIPVSService, IPVSRecord, IPVSSink } from "./ipvs_emit";
import {
  I_HAIRPIN,
  I_KINDS,
  I_POD_CIDRS,
  I_SERVICE_CIDRS,
  IPVS_LAYOUT_VERSION,
  ipvsFixedChains,
  ipvsMapDecls,
  ipvsMapId,
} from "./ipvs_layout";
import { generationSet } from "./names";
import { prefixOrAddr } from "./expr";
import { LOCAL_CIDR } from "./abi";

export class IPVSPlanResult {
  /** The nftables side; its added/removed/warnings as in nftables mode. */
  nft: PlanResult;
  /** One record per service covered (see IPVSRecord.text()). */
  records: string[] = [];
  /** Full plans: every address kube-ipvs0 must hold, sorted. */
  addresses: string[] = [];

  constructor(capacity: i32) {
    this.nft = new PlanResult(capacity);
  }
}

function kindOf(isMap: bool): string {
  return isMap ? "map" : "set";
}

function writeGeneration(cmds: Commands, generation: u32, fresh: bool): void {
  const g = generationSet(IPVS_LAYOUT_VERSION);
  if (fresh) cmds.named("add", "set", g, '"type":"mark"');
  else cmds.named("flush", "set", g, "");
  cmds.named("add", "element", g, '"elem":[' + generation.toString() + "]");
}

function addCIDRs(sink: IPVSSink, kind: i32, cidrs: string[]): void {
  for (let i = 0; i < cidrs.length; i++) {
    const c = cidrs[i];
    sink.element(ipvsMapId(kind, isV6(c)), prefixOrAddr(c), "");
  }
}

export function planIPVSFull(input: PlanInput): IPVSPlanResult {
  const cfg = input.config;
  const sink = new IPVSSink(false);
  const addresses = new Set<string>();
  let size = 1 << 16;
  const records = new Array<string>();
  for (let i = 0; i < input.services.length; i++) {
    const rec = emitIPVSService(unchecked(input.services[i]), cfg, sink);
    const binds = rec.binds.values();
    for (let b = 0; b < binds.length; b++) addresses.add(binds[b]);
    records.push(rec.text());
  }
  if (cfg.localMode == LOCAL_CIDR) addCIDRs(sink, I_POD_CIDRS, cfg.localCIDRs);
  addCIDRs(sink, I_SERVICE_CIDRS, cfg.serviceCIDRs);
  for (let m = 0; m < I_KINDS * 2; m++) size += sink.lists[m].len + 64;
  const res = new IPVSPlanResult(size);
  res.records = records;
  res.addresses = addresses.values();
  res.addresses.sort();
  const out = res.nft;
  for (let i = 0; i < sink.warnings.length; i++) out.warnings.push(sink.warnings[i]);

  const fixed = ipvsFixedChains(cfg);
  const planned = new Set<string>();
  for (let i = 0; i < fixed.length; i++) planned.add(fixed[i].name);
  const cmds = new Commands(out.batch);
  const inv = input.inventory;
  const reuse = inv.layout == IPVS_LAYOUT_VERSION;
  // As nftables mode's full plan: "add table" makes the delete valid when
  // there is no table; a table of another layout (nftables mode's, or an
  // older IPVS layout) is replaced whole in this same transaction.
  cmds.table("add");
  if (!reuse && (inv.layout != 0 || inv.chains.length > 0 || inv.sets.length > 0)) {
    cmds.table("delete");
    cmds.table("add");
    for (let i = 0; i < inv.chains.length; i++) out.removed.push("chain:" + inv.chains[i]);
    for (let i = 0; i < inv.sets.length; i++) out.removed.push("set:" + inv.sets[i]);
  }
  const decls = ipvsMapDecls();
  if (reuse) {
    // Rules first (nothing may reference what goes next), then the elements.
    for (let i = 0; i < inv.chains.length; i++) cmds.named("flush", "chain", inv.chains[i], "");
    for (let i = 0; i < decls.length; i++) {
      cmds.named("flush", kindOf(decls[i].isMap), decls[i].name, "");
    }
    for (let i = 0; i < inv.chains.length; i++) {
      if (!planned.has(inv.chains[i])) {
        cmds.named("delete", "chain", inv.chains[i], "");
        out.removed.push("chain:" + inv.chains[i]);
      }
    }
    // IPVS mode has no per-service sets; anything listed is a leftover.
    for (let i = 0; i < inv.sets.length; i++) {
      cmds.named("delete", "set", inv.sets[i], "");
      out.removed.push("set:" + inv.sets[i]);
    }
  }
  for (let i = 0; i < decls.length; i++) {
    cmds.named("add", kindOf(decls[i].isMap), decls[i].name, decls[i].decl);
  }
  writeGeneration(cmds, input.generation, !reuse);
  for (let i = 0; i < fixed.length; i++) {
    cmds.named("add", "chain", fixed[i].name, fixed[i].base);
    out.added.push("chain:" + fixed[i].name);
  }
  for (let i = 0; i < fixed.length; i++) cmds.rules(fixed[i]);
  for (let m = 0; m < I_KINDS * 2; m++) {
    if (sink.counts[m] > 0) cmds.elements("add", decls[m].name, sink.lists[m]);
  }
  cmds.end();
  return res;
}

function emitOne(svc: Service | null, input: PlanInput): IPVSSink {
  const sink = new IPVSSink(true);
  if (svc != null) emitIPVSService(svc, input.config, sink);
  return sink;
}

export function planIPVSDelta(input: PlanInput): IPVSPlanResult {
  const res = new IPVSPlanResult(4096);
  const out = res.nft;
  const decls = ipvsMapDecls();
  const dels = new Array<ByteWriter>(I_KINDS * 2);
  const adds = new Array<ByteWriter>(I_KINDS * 2);
  for (let m = 0; m < I_KINDS * 2; m++) {
    dels[m] = new ByteWriter(16);
    adds[m] = new ByteWriter(16);
  }
  for (let c = 0; c < input.changes.length; c++) {
    const ch = unchecked(input.changes[c]);
    const before = emitOne(ch.old, input);
    const after = new IPVSSink(true);
    let rec: IPVSRecord;
    if (ch.now != null) {
      rec = emitIPVSService(ch.now!, input.config, after);
    } else {
      // Gone: an empty record says "this service has nothing any more".
      rec = new IPVSRecord(ch.old!.id);
    }
    res.records.push(rec.text());
    for (let i = 0; i < after.warnings.length; i++) out.warnings.push(after.warnings[i]);
    for (let m = 0; m < I_KINDS * 2; m++) {
      const om = before.elements[m];
      const nm = after.elements[m];
      const isMap = decls[m].isMap;
      // Hairpin pairs (endpoint . endpoint) are the one key several services
      // can share (two services selecting the same pod), so a delta never
      // deletes them: another service may still need the pair. A stale pair
      // is harmless (a packet whose source and destination are the same pod
      // must be masqueraded, whoever sent it through the node), and the next
      // full sync, at least every syncPeriod, drops it.
      const hairpin = m == ipvsMapId(I_HAIRPIN, false) || m == ipvsMapId(I_HAIRPIN, true);
      const okeys = om.keys();
      for (let i = 0; i < okeys.length && !hairpin; i++) {
        const k = okeys[i];
        if (!nm.has(k) || nm.get(k) != om.get(k)) {
          const w = dels[m];
          if (w.len > 0) w.byte(0x2c);
          w.str(k);
        }
      }
      const nkeys = nm.keys();
      for (let i = 0; i < nkeys.length; i++) {
        const k = nkeys[i];
        if (!om.has(k) || om.get(k) != nm.get(k)) {
          const w = adds[m];
          if (w.len > 0) w.byte(0x2c);
          if (isMap) w.byte(0x5b).str(k).byte(0x2c).str(nm.get(k)).byte(0x5d);
          else w.str(k);
        }
      }
    }
  }
  const cmds = new Commands(out.batch);
  // Deletes before adds: an element whose value changed is deleted, then
  // added with the new value, in the same transaction.
  for (let m = 0; m < I_KINDS * 2; m++) {
    if (dels[m].len > 0) cmds.elements("delete", decls[m].name, dels[m]);
  }
  for (let m = 0; m < I_KINDS * 2; m++) {
    if (adds[m].len > 0) cmds.elements("add", decls[m].name, adds[m]);
  }
  writeGeneration(cmds, input.generation, false);
  cmds.end();
  return res;
}
