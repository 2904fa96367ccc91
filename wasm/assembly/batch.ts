// Assembles the nftables JSON batch: a full sync (the whole table, replacing
// whatever kpx left before in the same transaction) or a delta (only what the
// changed services add, change or remove).
import { ByteWriter } from "./writer";
import { isV6, PlanInput, Service } from "./model";
import { emitService } from "./emit";
import { DeltaSink, FullSink, SetDef, Sink } from "./sink";
import {
  ChainDef,
  fixedChains,
  M_NODEPORT_ADDRS,
  M_POD_CIDRS,
  M_SERVICE_CIDRS,
  MAP_KINDS,
  mapDecls,
  mapId,
} from "./layout";
import { sharedChainDef } from "./shared";
import { generationSet, isSharedChain } from "./names";
import { prefixOrAddr, T } from "./expr";
import { LAYOUT_VERSION, LOCAL_CIDR } from "./abi";

export class PlanResult {
  batch: ByteWriter;
  /** Chains and sets created ("chain:<name>", "set:<name>"). */
  added: string[] = [];
  /** Chains and sets deleted. */
  removed: string[] = [];
  warnings: string[] = [];

  /** capacity: a good guess saves the copies of a doubling buffer (megabytes at scale). */
  constructor(capacity: i32) {
    this.batch = new ByteWriter(capacity);
  }
}

/** Writes `{"<verb>":{"<kind>":{family,table,<body>}}}` commands, comma-separated. */
export class Commands {
  n: i32 = 0;
  /** wrapped: a whole batch, `{"nftables":[...]}`; else bare commands (a part of a full
   *  sync) that the host joins with the others. */
  constructor(public w: ByteWriter, public wrapped: bool = true) {
    if (wrapped) w.str('{"nftables":[');
  }
  private open(verb: string, kind: string): ByteWriter {
    if (this.n++ > 0) this.w.byte(0x2c);
    return this.w.str('{"').str(verb).str('":{"').str(kind).str('":{').str(T);
  }
  cmd(verb: string, kind: string, body: string): void {
    const w = this.open(verb, kind);
    if (body.length > 0) w.byte(0x2c).str(body);
    w.str("}}}");
  }
  named(verb: string, kind: string, name: string, extra: string): void {
    const w = this.open(verb, kind).str(',"name":').json(name);
    if (extra.length > 0) w.byte(0x2c).str(extra);
    w.str("}}}");
  }
  table(verb: string): void {
    if (this.n++ > 0) this.w.byte(0x2c);
    this.w.str('{"').str(verb).str('":{"table":{"family":"inet","name":"kpx"}}}');
  }
  rules(c: ChainDef): void {
    for (let i = 0; i < c.rules.length; i++) {
      const w = this.open("add", "rule").str(',"chain":').json(c.name);
      w.str(',"expr":').str(unchecked(c.rules[i])).str("}}}");
    }
  }
  elements(verb: string, name: string, list: ByteWriter): void {
    const w = this.open(verb, "element").str(',"name":').json(name).str(',"elem":[');
    w.append(list).str("]}}}");
  }
  end(): void {
    if (this.wrapped) this.w.str("]}");
  }
}

function chainDecl(c: ChainDef): string {
  return c.base;
}

function kindOf(isMap: bool): string {
  return isMap ? "map" : "set";
}

function setDecl(s: SetDef): string {
  return s.decl;
}

function writeGeneration(cmds: Commands, generation: u32, fresh: bool): void {
  const g = generationSet(LAYOUT_VERSION);
  if (fresh) cmds.named("add", "set", g, '"type":"mark"');
  else cmds.named("flush", "set", g, "");
  cmds.named("add", "element", g, '"elem":[' + generation.toString() + "]");
}

/** A part of a full sync (MODE_FULL_PART): what the head needs back besides the batch. */
export class PartResult extends PlanResult {
  /** The part's affinity sets: name, declaration, name, declaration, ... */
  sets: string[] = [];
  /** The shared chains its endpoint lists use (Sink.needs()). */
  shared: u32[] = [];
}

/**
 * A full sync is planned in parts so that the module's memory, which its
 * allocator never frees, holds one part's services at a time instead of the
 * whole cluster (the host runs each part in a fresh instance on the same
 * memory, src/planner/planner.ts). Each part's batch is bare commands: its
 * services' chains, each declared before any rule jumps to it, their rules,
 * then their map elements (verdict map elements name these chains). The head
 * (planFullHead), which the host puts before all parts, declares everything
 * the parts use: the table, the maps, the sets, the fixed and shared chains.
 */
export function planFullPart(input: PlanInput): PartResult {
  const cfg = input.config;
  let endpoints = 0;
  for (let i = 0; i < input.services.length; i++) {
    const ports = unchecked(input.services[i]).ports;
    for (let p = 0; p < ports.length; p++) endpoints += unchecked(ports[p]).endpoints.length;
  }
  const sink = new FullSink(input.services.length, endpoints);
  for (let i = 0; i < input.services.length; i++) {
    emitService(unchecked(input.services[i]), cfg, sink);
  }
  let size = 1 << 12;
  for (let m = 0; m < MAP_KINDS * 2; m++) size += sink.lists[m].len + 256;
  size += sink.chains.length * 512;
  const res = new PartResult(size);
  const cmds = new Commands(res.batch, false);
  for (let i = 0; i < sink.chains.length; i++) {
    cmds.named("add", "chain", sink.chains[i].name, chainDecl(sink.chains[i]));
    res.added.push("chain:" + sink.chains[i].name);
  }
  for (let i = 0; i < sink.chains.length; i++) cmds.rules(sink.chains[i]);
  const decls = mapDecls();
  for (let m = 0; m < MAP_KINDS * 2; m++) {
    if (sink.counts[m] > 0) cmds.elements("add", decls[m].name, sink.lists[m]);
  }
  for (let i = 0; i < sink.sets.length; i++) {
    res.sets.push(sink.sets[i].name);
    res.sets.push(sink.sets[i].decl);
    res.added.push("set:" + sink.sets[i].name);
  }
  res.shared = sink.needs();
  return res;
}

/**
 * The head of a full sync (MODE_FULL_HEAD), from the inventory and what the
 * parts reported: what they add (to know which of the kernel's chains to delete),
 * their sets and the shared chains they use. Bare commands, put first.
 */
export function planFullHead(input: PlanInput): PlanResult {
  const cfg = input.config;
  const sink = new FullSink();
  sink.addNeeds(input.partShared);
  // Sets filled from the configuration: only a full sync changes them.
  if (cfg.localMode == LOCAL_CIDR) addCIDRs(sink, M_POD_CIDRS, cfg.localCIDRs);
  addCIDRs(sink, M_SERVICE_CIDRS, cfg.serviceCIDRs);
  if (cfg.nodePortAddressesListed) addCIDRs(sink, M_NODEPORT_ADDRS, cfg.nodePortAddresses);
  const fixed = fixedChains(cfg);
  const shared = sink.sharedNames();
  const sharedDefs = new Array<ChainDef>();
  for (let i = 0; i < shared.length; i++) {
    sharedDefs.push(sharedChainDef(shared[i], cfg.masqueradeMark));
  }
  const planned = new Set<string>();
  for (let i = 0; i < fixed.length; i++) planned.add(fixed[i].name);
  for (let i = 0; i < sharedDefs.length; i++) planned.add(sharedDefs[i].name);
  // The parts' added lists: "chain:<name>" and "set:<name>".
  for (let i = 0; i < input.partAdded.length; i++) {
    const a = input.partAdded[i];
    if (a.startsWith("chain:")) planned.add(a.substring(6));
  }
  const sets = new Array<SetDef>();
  const setNames = new Set<string>();
  for (let i = 0; i + 1 < input.partSets.length; i += 2) {
    const name = input.partSets[i];
    if (setNames.has(name)) continue;
    setNames.add(name);
    sets.push(new SetDef(name, input.partSets[i + 1]));
  }

  let size = 1 << 16;
  for (let m = 0; m < MAP_KINDS * 2; m++) size += sink.lists[m].len + 256;
  size += sharedDefs.length * 512 + sets.length * 160;
  size += (input.inventory.chains.length + input.inventory.sets.length) * 96;
  const res = new PlanResult(size);
  const cmds = new Commands(res.batch, false);
  const inv = input.inventory;
  const reuse = inv.layout == LAYOUT_VERSION;
  // "add table" never fails on an existing table; it makes the delete below
  // valid when there is no table yet.
  cmds.table("add");
  if (!reuse && (inv.layout != 0 || inv.chains.length > 0 || inv.sets.length > 0)) {
    // A table from another layout: objects of the same name may have other
    // types. Replace it whole, still in this one transaction.
    cmds.table("delete");
    cmds.table("add");
    for (let i = 0; i < inv.chains.length; i++) res.removed.push("chain:" + inv.chains[i]);
    for (let i = 0; i < inv.sets.length; i++) res.removed.push("set:" + inv.sets[i]);
  }
  const decls = mapDecls();
  if (reuse) {
    // Empty what exists (rules first, so nothing references what goes next),
    // then delete what the new plan no longer has. Affinity sets are kept:
    // they hold the clients' stickiness.
    for (let i = 0; i < inv.chains.length; i++) cmds.named("flush", "chain", inv.chains[i], "");
    for (let i = 0; i < decls.length; i++) {
      cmds.named("flush", kindOf(decls[i].isMap), decls[i].name, "");
    }
    for (let i = 0; i < inv.chains.length; i++) {
      if (!planned.has(inv.chains[i])) {
        cmds.named("delete", "chain", inv.chains[i], "");
        res.removed.push("chain:" + inv.chains[i]);
      }
    }
    const fixedNames = new Set<string>();
    for (let i = 0; i < decls.length; i++) fixedNames.add(decls[i].name);
    for (let i = 0; i < inv.sets.length; i++) {
      const s = inv.sets[i];
      // Fixed sets and the marker are flushed above, never deleted.
      if (!setNames.has(s) && s != generationSet(LAYOUT_VERSION) && !fixedNames.has(s)) {
        cmds.named("delete", "set", s, "");
        res.removed.push("set:" + s);
      }
    }
  }
  for (let i = 0; i < decls.length; i++) {
    cmds.named("add", kindOf(decls[i].isMap), decls[i].name, decls[i].decl);
  }
  writeGeneration(cmds, input.generation, !reuse);
  // Affinity sets the table already has stay as they are, undeclared: their
  // name hashes their declaration (timeout included), and declaring one again
  // fails. nft gives a set that rules update the dynamic flag, which nft
  // 1.0.6's JSON cannot write, and the kernel refuses a set re-added with
  // other flags (File exists).
  const kept = new Set<string>();
  if (reuse) { for (let i = 0; i < inv.sets.length; i++) kept.add(inv.sets[i]); }
  for (let i = 0; i < sets.length; i++) {
    if (!kept.has(sets[i].name)) cmds.named("add", "set", sets[i].name, setDecl(sets[i]));
  }
  const all = fixed.concat(sharedDefs);
  for (let i = 0; i < all.length; i++) {
    cmds.named("add", "chain", all[i].name, chainDecl(all[i]));
    res.added.push("chain:" + all[i].name);
  }
  for (let i = 0; i < all.length; i++) cmds.rules(all[i]);
  for (let m = 0; m < MAP_KINDS * 2; m++) {
    if (sink.counts[m] > 0) cmds.elements("add", decls[m].name, sink.lists[m]);
  }
  return res;
}

function addCIDRs(sink: Sink, kind: i32, cidrs: string[]): void {
  for (let i = 0; i < cidrs.length; i++) {
    const c = cidrs[i];
    sink.element(mapId(kind, isV6(c)), prefixOrAddr(c), "");
  }
}

function sortedNames(s: Set<string>): string[] {
  const a = s.values();
  a.sort();
  return a;
}

function emitOne(svc: Service | null, input: PlanInput): DeltaSink {
  const sink = new DeltaSink();
  if (svc != null) emitService(svc, input.config, sink);
  return sink;
}

function chainMap(s: Sink): Map<string, ChainDef> {
  const m = new Map<string, ChainDef>();
  for (let i = 0; i < s.chains.length; i++) m.set(s.chains[i].name, s.chains[i]);
  return m;
}

function sameRules(a: ChainDef, b: ChainDef): bool {
  if (a.rules.length != b.rules.length) return false;
  for (let i = 0; i < a.rules.length; i++) if (a.rules[i] != b.rules[i]) return false;
  return true;
}

export function planDelta(input: PlanInput): PlanResult {
  const res = new PlanResult(4096);
  const decls = mapDecls();
  const dels = new Array<ByteWriter>(MAP_KINDS * 2);
  const adds = new Array<ByteWriter>(MAP_KINDS * 2);
  for (let m = 0; m < MAP_KINDS * 2; m++) {
    dels[m] = new ByteWriter(16);
    adds[m] = new ByteWriter(16);
  }
  const newChains = new Array<ChainDef>();
  const changedChains = new Array<ChainDef>();
  const goneChains = new Array<string>();
  const newSets = new Array<SetDef>();
  const goneSets = new Array<string>();
  const sharedNeeded = new Set<string>();

  for (let c = 0; c < input.changes.length; c++) {
    const ch = unchecked(input.changes[c]);
    const before = emitOne(ch.old, input);
    const after = emitOne(ch.now, input);
    for (let m = 0; m < MAP_KINDS * 2; m++) {
      const om = before.elements[m];
      const nm = after.elements[m];
      const isMap = decls[m].isMap;
      const okeys = om.keys();
      for (let i = 0; i < okeys.length; i++) {
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
    const oc = chainMap(before);
    const nc = chainMap(after);
    for (let i = 0; i < after.chains.length; i++) {
      const c2 = after.chains[i];
      if (!oc.has(c2.name)) newChains.push(c2);
      else if (!sameRules(oc.get(c2.name), c2)) changedChains.push(c2);
    }
    for (let i = 0; i < before.chains.length; i++) {
      if (!nc.has(before.chains[i].name)) goneChains.push(before.chains[i].name);
    }
    for (let i = 0; i < after.sets.length; i++) {
      if (!before.setNames.has(after.sets[i].name)) newSets.push(after.sets[i]);
    }
    for (let i = 0; i < before.sets.length; i++) {
      if (!after.setNames.has(before.sets[i].name)) goneSets.push(before.sets[i].name);
    }
    const sh = after.sharedNames();
    for (let i = 0; i < sh.length; i++) sharedNeeded.add(sh[i]);
  }

  // All a delta reads of the inventory: which shared chains exist. The host
  // sends only those the changed services' lists can use (src/planner/
  // inventory.ts#deltaInventory), so the input does not grow with the cluster.
  const existing = new Set<string>();
  for (let i = 0; i < input.inventory.chains.length; i++) {
    const name = input.inventory.chains[i];
    if (isSharedChain(name)) existing.add(name);
  }
  const needed = sortedNames(sharedNeeded);
  const sharedDefs = new Array<ChainDef>();
  for (let pass = 0; pass < 2; pass++) {
    const prefix = pass == 0 ? "slot-" : "pick-";
    for (let i = 0; i < needed.length; i++) {
      if (needed[i].startsWith(prefix) && !existing.has(needed[i])) {
        sharedDefs.push(sharedChainDef(needed[i], input.config.masqueradeMark));
      }
    }
  }

  const cmds = new Commands(res.batch);
  for (let i = 0; i < sharedDefs.length; i++) {
    cmds.named("add", "chain", sharedDefs[i].name, "");
    res.added.push("chain:" + sharedDefs[i].name);
  }
  for (let i = 0; i < sharedDefs.length; i++) cmds.rules(sharedDefs[i]);
  for (let i = 0; i < newSets.length; i++) {
    cmds.named("add", "set", newSets[i].name, newSets[i].decl);
    res.added.push("set:" + newSets[i].name);
  }
  for (let i = 0; i < newChains.length; i++) {
    cmds.named("add", "chain", newChains[i].name, "");
    res.added.push("chain:" + newChains[i].name);
  }
  for (let i = 0; i < changedChains.length; i++) {
    cmds.named("flush", "chain", changedChains[i].name, "");
  }
  for (let i = 0; i < newChains.length; i++) cmds.rules(newChains[i]);
  for (let i = 0; i < changedChains.length; i++) cmds.rules(changedChains[i]);
  // Deletes before adds: an element whose value changed is deleted, then
  // added with the new value, in the same transaction.
  for (let m = 0; m < MAP_KINDS * 2; m++) {
    if (dels[m].len > 0) cmds.elements("delete", decls[m].name, dels[m]);
  }
  for (let m = 0; m < MAP_KINDS * 2; m++) {
    if (adds[m].len > 0) cmds.elements("add", decls[m].name, adds[m]);
  }
  for (let i = 0; i < goneChains.length; i++) cmds.named("flush", "chain", goneChains[i], "");
  for (let i = 0; i < goneChains.length; i++) {
    cmds.named("delete", "chain", goneChains[i], "");
    res.removed.push("chain:" + goneChains[i]);
  }
  for (let i = 0; i < goneSets.length; i++) {
    cmds.named("delete", "set", goneSets[i], "");
    res.removed.push("set:" + goneSets[i]);
  }
  writeGeneration(cmds, input.generation, false);
  cmds.end();
  return res;
}
