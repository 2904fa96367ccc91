/**
 * The host side of the WebAssembly planner: instantiate, check the ABI, pass
 * the encoded input in, read the batch out. A trap or an abort inside the
 * module becomes a PlannerError; the caller keeps the last good rules.
 */
import { PLANNER_WASM_BASE64 } from "../../wasm/build/planner_wasm.ts";
import type { Service } from "../state/mod.ts";
import {
  ABI_VERSION,
  type EncodedChange,
  encodeDelta,
  type EncodedService,
  encodeFull,
  encodeFullHead,
  encodeFullParts,
} from "./encode.ts";
import type { Inventory, PlanContext, PlanOutput } from "./types.ts";
import { type IPVSPlanOutput, parseIPVSRecord } from "./ipvs.ts";

export class PlannerError extends Error {
  override name = "PlannerError";
}

/** The module speaks another ABI version than this host (or reports none): refused at load. */
export class PlannerVersionError extends PlannerError {
  override name = "PlannerVersionError";
  constructor(
    /** What the module's abiVersion() returned; null if it has no such export. */
    readonly moduleVersion: number | null,
    /** The version this host encodes and decodes (ABI_VERSION). */
    readonly hostVersion: number,
  ) {
    super(
      `Cannot load the planner: module ABI version ${
        moduleVersion ?? "none"
      }, this kpx needs ${hostVersion}`,
    );
  }
}

interface PlannerExports {
  abiVersion(): number;
  layoutVersion(): number;
  allocInput(len: number): number;
  plan(): number;
  outputPtr(): number;
  batchPtr(): number;
  batchLen(): number;
  planIPVS(): number;
  ipvsLayoutVersion(): number;
}

/**
 * The module imports its memory (wasm/asconfig.json: importMemory), so the
 * host decides its life: calls run one after another on one kept memory
 * (see #call), and a limit, if set, caps what any plan may use. 16 pages
 * (1 MiB) is the module's initialMemory.
 */
const INITIAL_PAGES = 16;

/**
 * A memory up to this size is kept for the next call. A full sync's part
 * needs about 2 MiB; a delta, well under one. A memory that one exceptional
 * plan grew beyond this is dropped after the call.
 */
const KEEP_BYTES = 16 * 1024 * 1024;

/**
 * A full nftables sync is planned in parts of about this many bytes of
 * encoded services (roughly 300 services of one port and ten endpoints). The
 * module's allocator never frees, so its memory grows with what one call
 * plans: a part, not the cluster (at 10k services x 10 endpoints, 69 MB for
 * the whole cluster in one call). Smaller parts cost more calls; this size
 * keeps their overhead under a few percent of the plan.
 */
const PART_BYTES = 128 * 1024;

export interface PlannerOptions {
  /** Caps the planner's memory (64 KiB pages); a plan that needs more fails. Default: none. */
  memoryLimitPages?: number;
  /** Encoded bytes of services per part of a full sync (PART_BYTES); tests make it small. */
  partBytes?: number;
}

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Reads an AssemblyScript string (UTF-16, byte length stored just before it). */
function readASString(memory: WebAssembly.Memory, ptr: number): string {
  if (!ptr) return "";
  const len = new DataView(memory.buffer).getUint32(ptr - 4, true);
  return new TextDecoder("utf-16le").decode(new Uint8Array(memory.buffer, ptr, len));
}

class OutputReader {
  #view: DataView;
  #pos = 0;
  #text = new TextDecoder();
  constructor(private readonly source: Uint8Array) {
    this.#view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  }
  u32(): number {
    const v = this.#view.getUint32(this.#pos, true);
    this.#pos += 4;
    return v;
  }
  /** A copy: the module's memory is reused or goes away after the call. */
  take(n: number): Uint8Array {
    const out = this.source.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
  strs(): string[] {
    const n = this.u32();
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.#text.decode(this.take(this.u32())));
    return out;
  }
  u32s(): number[] {
    const n = this.u32();
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.u32());
    return out;
  }
}

/** What one call of the module left: its batch (copied out) and its side output. */
interface CallOutput {
  batch: Uint8Array;
  side: OutputReader;
}

const BATCH_OPEN = new TextEncoder().encode('{"nftables":[');
const BATCH_CLOSE = new TextEncoder().encode("]}");
const COMMA = new TextEncoder().encode(",");

/** A full sync's head and parts (bare, comma-separated commands) as the chunks of one batch. */
function batchChunks(head: Uint8Array, parts: readonly Uint8Array[]): Uint8Array[] {
  const chunks: Uint8Array[] = [BATCH_OPEN];
  for (const p of [head, ...parts]) {
    if (p.length === 0) continue;
    if (chunks.length > 1) chunks.push(COMMA);
    chunks.push(p);
  }
  chunks.push(BATCH_CLOSE);
  return chunks;
}

/** A PlanOutput whose batch is joined from `chunks` on first read. */
function chunkedOutput(
  chunks: readonly Uint8Array[],
  rest: Omit<PlanOutput, "batch" | "chunks" | "bytes">,
): PlanOutput {
  let bytes = 0;
  for (const c of chunks) bytes += c.length;
  let joined: Uint8Array | undefined;
  return {
    ...rest,
    chunks,
    bytes,
    get batch(): Uint8Array {
      if (joined) return joined;
      if (chunks.length === 1) return joined = chunks[0]!;
      joined = new Uint8Array(bytes);
      let at = 0;
      for (const c of chunks) {
        joined.set(c, at);
        at += c.length;
      }
      return joined;
    },
  };
}

export class Planner {
  #module: WebAssembly.Module;
  #options: PlannerOptions;
  /** The memory the last call ran on, for the next (see #call); null after a failure. */
  #kept: WebAssembly.Memory | null = null;
  /** planFull/planDelta plan IPVS mode (see forIPVS()). */
  #ipvs = false;
  readonly layoutVersion: number;

  private constructor(module: WebAssembly.Module, layoutVersion: number, options: PlannerOptions) {
    this.#module = module;
    this.#options = options;
    this.layoutVersion = layoutVersion;
  }

  /** Compiles the planner module (the built-in one unless bytes are given) and checks its ABI. */
  static async load(
    bytes?: Uint8Array<ArrayBuffer>,
    options: PlannerOptions = {},
  ): Promise<Planner> {
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile(bytes ?? decodeBase64(PLANNER_WASM_BASE64));
    } catch (e) {
      throw new PlannerError("Cannot load the planner: invalid WebAssembly module", { cause: e });
    }
    const probe = new Planner(module, 0, options);
    let version: number | null;
    let layout = 0;
    try {
      const ex = probe.#instantiate(probe.#memory(), () => {});
      version = typeof ex.abiVersion === "function" ? ex.abiVersion() : null;
      if (version === ABI_VERSION) layout = ex.layoutVersion();
    } catch (e) {
      throw new PlannerError("Cannot load the planner: the module does not start", { cause: e });
    }
    // Nothing else is asked of a module of another version: its exports may mean other things.
    if (version !== ABI_VERSION) throw new PlannerVersionError(version, ABI_VERSION);
    return new Planner(module, layout, options);
  }

  /** A fresh memory for the module, within the limit if one is set. */
  #memory(): WebAssembly.Memory {
    const limit = this.#options.memoryLimitPages;
    return new WebAssembly.Memory(
      limit === undefined ? { initial: INITIAL_PAGES } : { initial: INITIAL_PAGES, maximum: limit },
    );
  }

  #instantiate(memory: WebAssembly.Memory, onAbort: (msg: string) => void): PlannerExports {
    const instance = new WebAssembly.Instance(this.#module, {
      env: {
        memory,
        abort(msg: number, file: number, line: number, col: number) {
          const text = `${readASString(memory, msg)} (${
            readASString(memory, file)
          }:${line}:${col})`;
          onAbort(text);
          throw new PlannerError(`planner aborted: ${text}`);
        },
      },
    });
    return instance.exports as unknown as PlannerExports;
  }

  /**
   * One call of the module: a new instance for every call, so nothing
   * survives from one call to the next, least of all the state of an
   * instance that trapped (possibly half-written; the allocator never
   * frees). Compiling is done once, in load(); an instance costs about
   * 0.3 ms. The memory is the one the last call used, when there was one:
   * a fresh memory per call is native memory that only a garbage collection
   * gives back, a megabyte or more per sync. A used memory is not zeroed: the
   * instance's allocator starts again at the bottom, and AssemblyScript
   * initialises all it allocates (its standard library is written for
   * allocators that hand out used memory); test/plan_memory_test.ts checks
   * that the output does not depend on what the memory held.
   */
  #call(input: Uint8Array, ipvs: boolean): CallOutput {
    const memory = this.#kept ?? this.#memory();
    // Dropped if the call fails: a trapped instance may have grown it to the limit.
    this.#kept = null;
    let aborted = "";
    try {
      const ex = this.#instantiate(memory, (m) => aborted = m);
      const ptr = ex.allocInput(input.length);
      new Uint8Array(memory.buffer, ptr, input.length).set(input);
      const len = ipvs ? ex.planIPVS() : ex.plan();
      // Copies: the memory is reused by the next call or dropped.
      const side = new Uint8Array(memory.buffer, ex.outputPtr(), len).slice();
      const batch = new Uint8Array(memory.buffer, ex.batchPtr(), ex.batchLen()).slice();
      if (memory.buffer.byteLength <= KEEP_BYTES) this.#kept = memory;
      return { batch, side: new OutputReader(side) };
    } catch (e) {
      throw new PlannerError(
        `Cannot plan: the planner failed${aborted ? `: ${aborted}` : ""}`,
        { cause: e },
      );
    }
  }

  #run(input: Uint8Array): PlanOutput;
  #run(input: Uint8Array, ipvs: true): IPVSPlanOutput;
  #run(input: Uint8Array, ipvs = false): PlanOutput {
    const { batch, side } = this.#call(input, ipvs);
    const out = {
      batch,
      chunks: [batch],
      bytes: batch.length,
      added: side.strs(),
      removed: side.strs(),
      warnings: side.strs(),
      inputBytes: input.length,
    };
    if (!ipvs) return out;
    const withIPVS: IPVSPlanOutput = {
      ...out,
      ipvs: { records: side.strs().map(parseIPVSRecord), addresses: side.strs() },
    };
    return withIPVS;
  }

  /**
   * A full nftables sync in parts (wasm/assembly/batch.ts#planFullPart): each
   * part plans a slice of the services on the kept memory, which so grows to
   * what one part needs; then the head, told what the parts use, declares
   * the table and everything shared and deletes what the kernel holds that
   * no part planned. One batch, head first: still one transaction.
   */
  #planParts(
    services: readonly (Service | EncodedService)[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): PlanOutput {
    const batches: Uint8Array[] = [];
    const added: string[] = [];
    const warnings: string[] = [];
    const sets: string[] = [];
    const shared = new Set<number>();
    let inputBytes = 0;
    const partBytes = this.#options.partBytes ?? PART_BYTES;
    for (const part of encodeFullParts(services, ctx, generation, partBytes)) {
      const { batch, side } = this.#call(part, false);
      inputBytes += part.length;
      batches.push(batch);
      added.push(...side.strs());
      side.strs(); // removed: a part removes nothing
      warnings.push(...side.strs());
      sets.push(...side.strs());
      for (const n of side.u32s()) shared.add(n);
    }
    const headInput = encodeFullHead(ctx, inventory, generation, {
      added,
      sets,
      shared: [...shared].sort((a, b) => a - b),
    });
    inputBytes += headInput.length;
    const head = this.#call(headInput, false);
    const headAdded = head.side.strs();
    const removed = head.side.strs();
    warnings.push(...head.side.strs());
    return chunkedOutput(batchChunks(head.batch, batches), {
      added: [...headAdded, ...added],
      removed,
      warnings,
      inputBytes,
    });
  }

  /** The whole table, replacing what `inventory` says is in the kernel. */
  planFull(
    services: readonly (Service | EncodedService)[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): PlanOutput {
    if (this.#ipvs) return this.planIPVSFull(services, ctx, inventory, generation);
    return this.#planParts(services, ctx, inventory, generation);
  }

  /** Only what the changed services add, change or remove. */
  planDelta(
    changes: readonly EncodedChange[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): PlanOutput {
    if (this.#ipvs) return this.planIPVSDelta(changes, ctx, inventory, generation);
    return this.#run(encodeDelta(changes, ctx, inventory, generation));
  }

  /** IPVS mode: the whole nftables table, and every service's virtual services. */
  planIPVSFull(
    services: readonly (Service | EncodedService)[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): IPVSPlanOutput {
    Planner.#needsIPVS(ctx);
    return this.#run(encodeFull(services, ctx, inventory, generation), true);
  }

  /** IPVS mode: element changes of the changed services, and their virtual services now. */
  planIPVSDelta(
    changes: readonly EncodedChange[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): IPVSPlanOutput {
    Planner.#needsIPVS(ctx);
    return this.#run(encodeDelta(changes, ctx, inventory, generation), true);
  }

  /** IPVS mode needs a scheduler (and node addresses) in the context. */
  static #needsIPVS(ctx: PlanContext): void {
    if (!ctx.ipvs?.scheduler) {
      throw new PlannerError("Cannot plan IPVS mode: the plan context has no ipvs scheduler");
    }
  }

  /**
   * The same module planning IPVS mode through planFull/planDelta, with IPVS
   * mode's layout version: what a PlanSession needs to track an IPVS-mode
   * table (its outputs are IPVSPlanOutputs; see isIPVSPlanOutput()).
   */
  forIPVS(): Planner {
    const ex = this.#instantiate(this.#memory(), () => {});
    const p = new Planner(this.#module, ex.ipvsLayoutVersion(), this.#options);
    p.#ipvs = true;
    return p;
  }
}
