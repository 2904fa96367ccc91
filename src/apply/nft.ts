/**
 * kpx's window on nftables: apply a JSON batch as one transaction, and read
 * back what verification needs (chain and affinity set names, the generation marker) without
 * listing map elements (seconds at 100k elements). A real implementation runs
 * nft; FakeNft wraps the in-memory FakeNftables for tests.
 */
import { CommandFailedError, runChecked, type Runner } from "./process.ts";
import { FakeNftables } from "./nft_fake.ts";

export const TABLE_FAMILY = "inet";
export const TABLE_NAME = "kpx";

/** nft refused a batch; the kernel took none of it. */
export class NftApplyError extends Error {
  override name = "NftApplyError";
}

export interface TableState {
  exists: boolean;
  chains: string[];
  /** Sets that are not part of the fixed layout: affinity sets. */
  sets: string[];
  /** Generation number in the marker set, 0 if none. */
  generation: number;
  /** Layout version from the marker's name, 0 if none. */
  layout: number;
}

/** What verification reads after each apply: cheap at any scale. */
export interface Marker {
  chains: string[];
  /** kpx's per-service (affinity) sets, sorted. */
  sets: string[];
  /** 0 if the marker set is missing. */
  generation: number;
}

export interface Nft {
  /**
   * Applies a batch atomically; throws NftApplyError (nothing applied) on
   * refusal. The batch may come in chunks (PlanOutput.chunks), written in order.
   */
  apply(batch: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** kpx's chains, its non-fixed sets (affinity), and the generation marker: the
   *  inventory a full plan needs after a start or a failure. */
  readTable(): Promise<TableState>;
  /** Chain names and the generation in the marker of this layout. */
  readMarker(layout: number): Promise<Marker>;
  /** Deletes kpx's table if present. */
  deleteTable(): Promise<boolean>;
}

interface JsonList {
  nftables: Array<Record<string, Record<string, unknown>>>;
}

function batchBytes(batch: Uint8Array | readonly Uint8Array[]): number {
  if (batch instanceof Uint8Array) return batch.length;
  let n = 0;
  for (const c of batch) n += c.length;
  return n;
}

/** A batch given in chunks, as one array (the same array when it is one already). */
export function joinBatch(batch: Uint8Array | readonly Uint8Array[]): Uint8Array {
  if (batch instanceof Uint8Array) return batch;
  const out = new Uint8Array(batchBytes(batch));
  let at = 0;
  for (const c of batch) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function parseList(bytes: Uint8Array): JsonList {
  return JSON.parse(new TextDecoder().decode(bytes)) as JsonList;
}

const GENERATION_SET = /^generation-l(\d+)$/;
export const AFFINITY_SET_PREFIX = "affinity-ep-";

function chainNames(list: JsonList): string[] {
  const out: string[] = [];
  for (const o of list.nftables) {
    const c = o["chain"];
    if (c && c["table"] === TABLE_NAME) out.push(String(c["name"]));
  }
  return out.sort();
}

function affinitySets(list: JsonList): string[] {
  const out: string[] = [];
  for (const o of list.nftables) {
    const s = o["set"];
    if (s && s["table"] === TABLE_NAME && String(s["name"]).startsWith(AFFINITY_SET_PREFIX)) {
      out.push(String(s["name"]));
    }
  }
  return out.sort();
}

export class NftCli implements Nft {
  constructor(readonly runner: Runner) {}

  async apply(batch: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const r = await this.runner.run(["nft", "-j", "-f", "-"], batch);
    if (r.code !== 0) {
      // nft reports one line per failing command; a refused large batch can
      // also surface as ENOBUFS when those reports overflow its socket.
      const lines = r.stderr.trim().split("\n").filter((l) => l.trim() !== "");
      const first = [...new Set(lines)].slice(0, 3).join("; ");
      throw new NftApplyError(
        `Cannot apply the nftables batch (${batchBytes(batch)} bytes): nft exit status ${r.code}: ${
          first || "no message"
        }`,
      );
    }
  }

  /** kpx's chains and sets by name; -t (terse) leaves out every set's elements. */
  #listNames(): Promise<[Uint8Array, Uint8Array]> {
    return Promise.all([
      runChecked(this.runner, ["nft", "-j", "list", "chains", TABLE_FAMILY]),
      runChecked(this.runner, ["nft", "-j", "-t", "list", "sets", TABLE_FAMILY]),
    ]);
  }

  /** The generation in the marker set of this layout (one element); 0 if it is missing. */
  async #generation(layout: number): Promise<number> {
    const r = await this.runner.run(
      ["nft", "-j", "list", "set", TABLE_FAMILY, TABLE_NAME, `generation-l${layout}`],
    );
    if (r.code !== 0) return 0;
    for (const o of parseList(r.stdout).nftables) {
      const elem = o["set"]?.["elem"];
      if (Array.isArray(elem) && typeof elem[0] === "number") return elem[0];
    }
    return 0;
  }

  async readTable(): Promise<TableState> {
    // Names only (no set or map elements): cheap at any scale.
    const [chains, sets] = await this.#listNames();
    const setList = parseList(sets);
    let layout = 0;
    for (const o of setList.nftables) {
      const s = o["set"];
      const m = s && s["table"] === TABLE_NAME ? GENERATION_SET.exec(String(s["name"])) : null;
      if (m) layout = Number(m[1]);
    }
    const state: TableState = {
      exists: false,
      chains: chainNames(parseList(chains)),
      // Fixed sets come back with the layout; only per-service sets are inventory.
      sets: affinitySets(setList),
      generation: layout ? await this.#generation(layout) : 0,
      layout,
    };
    state.exists = state.chains.length > 0 || state.sets.length > 0 || layout > 0 ||
      await this.#tableExists();
    return state;
  }

  async readMarker(layout: number): Promise<Marker> {
    // Three listings in parallel, none with the table's elements: cheap at any scale.
    const [[chains, sets], generation] = await Promise.all([
      this.#listNames(),
      this.#generation(layout),
    ]);
    return {
      chains: chainNames(parseList(chains)),
      sets: affinitySets(parseList(sets)),
      generation,
    };
  }

  async #tableExists(): Promise<boolean> {
    const out = parseList(await runChecked(this.runner, ["nft", "-j", "list", "tables"]));
    return out.nftables.some((o) =>
      o["table"]?.["family"] === TABLE_FAMILY && o["table"]?.["name"] === TABLE_NAME
    );
  }

  async deleteTable(): Promise<boolean> {
    if (!(await this.#tableExists())) return false;
    try {
      await runChecked(this.runner, ["nft", "delete", "table", TABLE_FAMILY, TABLE_NAME]);
    } catch (e) {
      throw new NftApplyError(`Cannot delete table ${TABLE_FAMILY} ${TABLE_NAME}`, { cause: e });
    }
    return true;
  }
}

/** The in-memory nftables behind the Nft interface, with injectable failures. */
export class FakeNft implements Nft {
  readonly table = new FakeNftables();
  /** Batches applied (including refused ones). */
  attempts = 0;
  /** Makes the next n applies fail as if nft refused them. */
  failNextApplies = 0;
  /** The next marker read reports this generation (as if an update were lost). */
  corruptNextMarker: number | undefined;
  /** Test seam: the next readMarker() does not report this affinity set. */
  hideNextMarkerSet: string | undefined;

  apply(batch: Uint8Array | readonly Uint8Array[]): Promise<void> {
    this.attempts++;
    if (this.failNextApplies > 0) {
      this.failNextApplies--;
      return Promise.reject(new NftApplyError("Cannot apply the nftables batch: injected failure"));
    }
    try {
      this.table.apply(joinBatch(batch));
    } catch (e) {
      return Promise.reject(new NftApplyError((e as Error).message, { cause: e }));
    }
    return Promise.resolve();
  }

  readTable(): Promise<TableState> {
    const snap = this.table.snapshot();
    if (!snap) {
      return Promise.resolve({ exists: false, chains: [], sets: [], generation: 0, layout: 0 });
    }
    let generation = 0, layout = 0;
    for (const n of Object.keys(snap.sets)) {
      const m = GENERATION_SET.exec(n);
      if (m) {
        layout = Number(m[1]);
        generation = Number(snap.sets[n]?.[0] ?? 0);
      }
    }
    const sets = Object.keys(snap.sets).filter((n) => n.startsWith(AFFINITY_SET_PREFIX));
    return Promise.resolve({
      exists: true,
      chains: this.table.chainNames(),
      sets,
      generation,
      layout,
    });
  }

  readMarker(layout: number): Promise<Marker> {
    const snap = this.table.snapshot();
    const g = snap?.sets[`generation-l${layout}`]?.[0];
    const corrupt = this.corruptNextMarker;
    this.corruptNextMarker = undefined;
    const sets = Object.keys(snap?.sets ?? {}).filter((n) => n.startsWith(AFFINITY_SET_PREFIX));
    const hidden = this.hideNextMarkerSet ? sets.indexOf(this.hideNextMarkerSet) : -1;
    if (hidden >= 0) sets.splice(hidden, 1);
    this.hideNextMarkerSet = undefined;
    return Promise.resolve({
      chains: this.table.chainNames(),
      sets: sets.sort(),
      generation: corrupt ?? (g === undefined ? 0 : Number(g)),
    });
  }

  deleteTable(): Promise<boolean> {
    const had = this.table.hasTable(TABLE_FAMILY, TABLE_NAME);
    if (had) this.table.apply('{"nftables":[{"delete":{"table":{"family":"inet","name":"kpx"}}}]}');
    return Promise.resolve(had);
  }
}

export { CommandFailedError };
