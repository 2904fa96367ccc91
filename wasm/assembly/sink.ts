// Where a service's contribution goes. A full sync streams every element
// straight into one JSON array per map; a delta collects each service's
// elements twice (as last applied and as now) and compares them.
import { ByteWriter } from "./writer";
import {
  ChainDef,
  M_CLUSTER_IPS,
  M_SERVICE_IPS,
  M_VIP_ADDRS,
  M_VIP_PORTS,
  M_VIP_TARGETS,
  MAP_KINDS,
  mapDecls,
  mapId,
} from "./layout";
import { pickChain, slotChain } from "./names";

export class SetDef {
  constructor(public name: string, public decl: string) {}
}

export abstract class Sink {
  /** The writer the current element's key, then value, is written to. */
  w: ByteWriter = new ByteWriter(128);
  chains: ChainDef[] = [];
  chainNames: Set<string> = new Set<string>();
  sets: SetDef[] = [];
  setNames: Set<string> = new Set<string>();
  /** Shared chains used, by (path, uniform): the number of slot chains needed
   *  and the list lengths that need a pick chain. Integers, not names: this is
   *  per endpoint, the hottest path of a full plan. */
  slots: i32[] = [0, 0, 0, 0, 0, 0, 0, 0];
  picks: Set<i32> = new Set<i32>();

  useList(path: i32, uniform: bool, n: i32): void {
    const k = path * 2 + (uniform ? 1 : 0);
    if (n > unchecked(this.slots[k])) unchecked(this.slots[k] = n);
    if (n > 1) this.picks.add((k << 24) | n);
  }

  /**
   * The shared chains used, as numbers a full sync's head merges from all its
   * parts (addNeeds): for each (path, uniform) k that uses slots, the high bit
   * set with k << 24 | slot count; then every pick as useList() keys it.
   */
  needs(): u32[] {
    const out = new Array<u32>();
    for (let k = 0; k < 8; k++) {
      const n = unchecked(this.slots[k]);
      if (n > 0) out.push(0x80000000 | (<u32> k << 24) | <u32> n);
    }
    const picks = this.picks.values();
    for (let i = 0; i < picks.length; i++) out.push(<u32> picks[i]);
    return out;
  }

  addNeeds(list: u32[]): void {
    for (let i = 0; i < list.length; i++) {
      const v = unchecked(list[i]);
      if ((v & 0x80000000) == 0) {
        this.picks.add(<i32> v);
        continue;
      }
      const k = <i32> ((v >> 24) & 0x7f);
      if (k >= 8) abort("planner input: shared chain need out of range");
      const n = <i32> (v & 0xffffff);
      if (n > unchecked(this.slots[k])) unchecked(this.slots[k] = n);
    }
  }

  /** Names of the shared chains used, slot chains first (pick chains jump to them). */
  sharedNames(): string[] {
    const out = new Array<string>();
    for (let k = 0; k < 8; k++) {
      for (let i = 0; i < unchecked(this.slots[k]); i++) {
        out.push(slotChain(k >> 1, (k & 1) == 1, i));
      }
    }
    const picks = this.picks.values();
    picks.sort();
    for (let i = 0; i < picks.length; i++) {
      const v = picks[i];
      const k = v >> 24;
      out.push(pickChain(k >> 1, (k & 1) == 1, v & 0xffffff));
    }
    return out;
  }

  abstract begin(map: i32): void;
  /** Between key and value, for maps. */
  abstract value(): void;
  abstract end(): void;

  /** Adds a per-service chain once; returns false if it was already added. */
  chain(c: ChainDef): bool {
    if (this.chainNames.has(c.name)) return false;
    this.chainNames.add(c.name);
    this.chains.push(c);
    return true;
  }

  set(s: SetDef): void {
    if (this.setNames.has(s.name)) return;
    this.setNames.add(s.name);
    this.sets.push(s);
  }

  /** Convenience for elements whose key and value are prepared strings. */
  element(map: i32, key: string, value: string): void {
    this.begin(map);
    this.w.str(key);
    if (value.length > 0) {
      this.value();
      this.w.str(value);
    }
    this.end();
  }
}

export class FullSink extends Sink {
  lists: ByteWriter[] = new Array<ByteWriter>(MAP_KINDS * 2);
  counts: i32[] = new Array<i32>(MAP_KINDS * 2);
  private isMap: bool = false;

  /**
   * Lists sized from the input: the memory of this module is never freed,
   * so a list that doubles its way up leaves its own size again as garbage.
   * The guesses cover the common shapes (IPv4 ClusterIPs, one port); the
   * rest grows as needed.
   */
  constructor(services: i32 = 0, endpoints: i32 = 0) {
    super();
    for (let i = 0; i < MAP_KINDS * 2; i++) this.lists[i] = new ByteWriter(64);
    const perService = services * 64 + 64;
    this.lists[mapId(M_SERVICE_IPS, false)] = new ByteWriter(perService);
    this.lists[mapId(M_VIP_TARGETS, false)] = new ByteWriter(perService);
    this.lists[mapId(M_VIP_PORTS, false)] = new ByteWriter(perService);
    this.lists[mapId(M_CLUSTER_IPS, false)] = new ByteWriter(services * 20 + 64);
    this.lists[mapId(M_VIP_ADDRS, false)] = new ByteWriter(endpoints * 56 + 64);
  }

  begin(map: i32): void {
    const w = unchecked(this.lists[map]);
    if (unchecked(this.counts[map]) > 0) w.byte(0x2c);
    this.isMap = unchecked(mapDecls()[map]).isMap;
    if (this.isMap) w.byte(0x5b);
    this.w = w;
    unchecked(this.counts[map] = this.counts[map] + 1);
  }

  value(): void {
    this.w.byte(0x2c);
  }

  end(): void {
    if (this.isMap) this.w.byte(0x5d);
  }
}

export class DeltaSink extends Sink {
  /** Per map: element key JSON -> value JSON ("" for sets). */
  elements: Map<string, string>[] = new Array<Map<string, string>>(MAP_KINDS * 2);
  private map: i32 = 0;
  private key: string = "";
  private hasValue: bool = false;

  constructor() {
    super();
    for (let i = 0; i < MAP_KINDS * 2; i++) this.elements[i] = new Map<string, string>();
  }

  begin(map: i32): void {
    this.map = map;
    this.hasValue = false;
    this.w.reset();
  }

  value(): void {
    this.key = this.w.toString();
    this.hasValue = true;
    this.w.reset();
  }

  end(): void {
    const m = unchecked(this.elements[this.map]);
    if (this.hasValue) m.set(this.key, this.w.toString());
    else m.set(this.w.toString(), "");
  }
}
