/**
 * Encodes the planner input. Little-endian; strings are u32 byte length +
 * UTF-8; lists are u32 count + items. The layout mirrors
 * wasm/assembly/model.ts#readInput; change both and bump ABI_VERSION.
 */
import type { Service } from "../state/mod.ts";
import { deltaInventory } from "./inventory.ts";
import { EMPTY_INVENTORY, type Inventory, type PlanContext } from "./types.ts";

export const ABI_VERSION = 3;
const MAGIC = 0x5058504b; // "KPXP"
const PROTO = { TCP: 1, UDP: 2, SCTP: 3 } as const;
/** wasm/assembly/abi.ts: MODE_FULL, MODE_DELTA, MODE_FULL_PART, MODE_FULL_HEAD. */
const MODE = { full: 0, delta: 1, part: 2, head: 3 } as const;

class Encoder {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;
  #text = new TextEncoder();

  constructor(capacity = 1 << 16) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Starts over, keeping the buffer (a scratch encoder reused for many small outputs). */
  reset(): void {
    this.#len = 0;
  }

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = v;
  }
  bool(v: boolean): void {
    this.u8(v ? 1 : 0);
  }
  u16(v: number): void {
    this.#ensure(2);
    this.#view.setUint16(this.#len, v, true);
    this.#len += 2;
  }
  u32(v: number): void {
    this.#ensure(4);
    this.#view.setUint32(this.#len, v >>> 0, true);
    this.#len += 4;
  }
  str(s: string): void {
    this.#ensure(4 + s.length * 3);
    const { written } = this.#text.encodeInto(s, this.#buf.subarray(this.#len + 4));
    this.#view.setUint32(this.#len, written, true);
    this.#len += 4 + written;
  }
  strs(list: readonly string[]): void {
    this.u32(list.length);
    for (const s of list) this.str(s);
  }
  raw(b: Uint8Array): void {
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }
  /** Overwrites the u32 at `at` (a count written before its items were known). */
  patchU32(at: number, v: number): void {
    this.#view.setUint32(at, v >>> 0, true);
  }
  get length(): number {
    return this.#len;
  }
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

function header(e: Encoder, mode: number, generation: number, ctx: PlanContext, inv: Inventory) {
  e.u32(MAGIC);
  e.u32(ABI_VERSION);
  e.u8(mode);
  e.u32(generation);
  e.u32(2 ** ctx.masqueradeBit);
  e.bool(ctx.masqueradeAll);
  e.bool(ctx.dropInvalid);
  const ld = ctx.localDetection;
  e.u8(ld.mode === "None" ? 0 : ld.mode === "CIDR" ? 1 : ld.mode === "BridgeInterface" ? 2 : 3);
  e.strs(ld.mode === "CIDR" ? ld.cidrs : []);
  e.str(
    ld.mode === "BridgeInterface"
      ? ld.interfaceName
      : ld.mode === "InterfaceNamePrefix"
      ? ld.interfacePrefix
      : "",
  );
  e.bool(ctx.nodePortAddresses !== null);
  e.strs(ctx.nodePortAddresses ?? []);
  e.strs(ctx.serviceCIDRs);
  e.str(ctx.nodeName);
  e.str(ctx.nodeZone);
  // ABI 2: IPVS mode's scheduler and node-port addresses (empty in nftables mode).
  e.str(ctx.ipvs?.scheduler ?? "");
  e.strs(ctx.ipvs?.nodeIPs ?? []);
  e.u32(inv.layout);
  e.strs(inv.chains);
  e.strs(inv.sets);
}

function service(e: Encoder, s: Service): void {
  e.str(s.id);
  e.u8((s.externalTrafficLocal ? 1 : 0) | (s.internalTrafficLocal ? 2 : 0));
  e.u32(s.affinitySeconds);
  e.strs(s.clusterIPs);
  e.strs(s.externalIPs);
  e.strs(s.loadBalancerIPs);
  e.strs(s.firewallSourceRanges);
  e.u32(s.ports.length);
  for (const p of s.ports) {
    e.str(p.name);
    e.u8(PROTO[p.protocol]);
    e.u16(p.port);
    e.u16(p.nodePort);
    e.u32(p.endpoints.length);
    for (const ep of p.endpoints) {
      e.str(ep.address);
      e.u16(ep.port);
      e.u8((ep.ready ? 1 : 0) | (ep.serving ? 2 : 0) | (ep.terminating ? 4 : 0));
      e.str(ep.nodeName);
      e.strs(ep.zoneHints);
      e.strs(ep.nodeHints);
    }
  }
}

/** A service encoded on its own; what PlanSession keeps of applied services. */
export type EncodedService = Uint8Array;

/** The endpoints of a service's longest port. */
function longestPort(s: Service): number {
  return Math.max(0, ...s.ports.map((p) => p.endpoints.length));
}

/** Of each encoded service, its longestPort(), noted when it was encoded (for encodeDelta). */
const longestPorts = new WeakMap<EncodedService, number>();

/**
 * encodeService()'s buffer, reused: a full sync encodes every service, and a
 * fresh 64 KiB buffer for each (10k at 10k services) is hundreds of
 * megabytes of short-lived native memory that the process keeps.
 */
const scratch = new Encoder();

export function encodeService(s: Service): EncodedService {
  scratch.reset();
  service(scratch, s);
  const bytes = scratch.bytes().slice();
  longestPorts.set(bytes, longestPort(s));
  return bytes;
}

function serviceOrBytes(e: Encoder, s: Service | EncodedService): void {
  if (s instanceof Uint8Array) e.raw(s);
  else service(e, s);
}

export function encodeFull(
  services: readonly (Service | EncodedService)[],
  ctx: PlanContext,
  inventory: Inventory,
  generation: number,
): Uint8Array {
  const e = new Encoder();
  header(e, MODE.full, generation, ctx, inventory);
  e.u32(services.length);
  for (const s of services) serviceOrBytes(e, s);
  return e.bytes();
}

/**
 * A full nftables sync's parts (wasm/assembly/batch.ts#planFullPart): the
 * services in order, cut into inputs of about `partBytes` each (at least one
 * service). Parts read no inventory: the head deals with the kernel's table.
 * Each part is a view of one buffer that the next part overwrites: use it
 * (the planner copies it into its memory) before asking for the next.
 */
export function* encodeFullParts(
  services: readonly (Service | EncodedService)[],
  ctx: PlanContext,
  generation: number,
  partBytes: number,
): Generator<Uint8Array> {
  // Sized for a part and its last service, so that it rarely grows.
  const e = new Encoder(Math.min(partBytes, 1 << 22) + (1 << 16));
  let countAt = 0;
  let count = 0;
  for (const s of services) {
    if (count === 0) {
      e.reset();
      header(e, MODE.part, generation, ctx, EMPTY_INVENTORY);
      countAt = e.length;
      e.u32(0);
    }
    serviceOrBytes(e, s);
    count++;
    if (e.length >= partBytes) {
      e.patchU32(countAt, count);
      yield e.bytes();
      count = 0;
    }
  }
  if (count > 0) {
    e.patchU32(countAt, count);
    yield e.bytes();
  }
}

/** What a full sync's parts reported, for its head. */
export interface PartsSummary {
  /** "chain:<name>" and "set:<name>" the parts add. */
  added: readonly string[];
  /** The parts' affinity sets: name, declaration, name, declaration, ... */
  sets: readonly string[];
  /** The shared chains the parts' endpoint lists use (the module's own numbers). */
  shared: readonly number[];
}

/** A full sync's head (wasm/assembly/batch.ts#planFullHead): no services, what the parts use. */
export function encodeFullHead(
  ctx: PlanContext,
  inventory: Inventory,
  generation: number,
  parts: PartsSummary,
): Uint8Array {
  const e = new Encoder();
  header(e, MODE.head, generation, ctx, inventory);
  e.u32(0);
  e.strs(parts.added);
  e.strs(parts.sets);
  e.u32(parts.shared.length);
  for (const n of parts.shared) e.u32(n);
  return e.bytes();
}

export interface ServiceChange {
  /** The service as last applied (null: it was not programmed). */
  old: Service | null;
  /** The service now (null: it is gone or not programmable). */
  now: Service | null;
}

/** A change with either side possibly already encoded. */
export interface EncodedChange {
  old: Service | EncodedService | null;
  now: Service | EncodedService | null;
}

/** The most endpoints any port of the changed services has, before or after. */
function longestList(changes: readonly EncodedChange[]): number {
  let longest = 0;
  for (const c of changes) {
    for (const s of [c.old, c.now]) {
      if (!s) continue;
      const n = s instanceof Uint8Array ? longestPorts.get(s) : longestPort(s);
      if (n === undefined) {
        throw new Error("Cannot encode a delta: service bytes not from encodeService()");
      }
      longest = Math.max(longest, n);
    }
  }
  return longest;
}

/**
 * A delta's input: the changed services, and of the inventory only the shared
 * chains their endpoint lists (none longer than the longest port) can use,
 * which is all the planner's delta reads of it. So the input, like the
 * batch, is as big as the change, whatever the size of the cluster.
 */
export function encodeDelta(
  changes: readonly EncodedChange[],
  ctx: PlanContext,
  inventory: Inventory,
  generation: number,
): Uint8Array {
  const e = new Encoder();
  header(e, MODE.delta, generation, ctx, deltaInventory(inventory, longestList(changes)));
  e.u32(changes.length);
  for (const c of changes) {
    e.u8((c.old ? 1 : 0) | (c.now ? 2 : 0));
    if (c.old) serviceOrBytes(e, c.old);
    if (c.now) serviceOrBytes(e, c.now);
  }
  return e.bytes();
}
