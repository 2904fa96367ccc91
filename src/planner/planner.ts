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
  memory: WebAssembly.Memory;
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
  /** A copy: the module's memory goes away with its instance. */
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
}

export class Planner {
  #module: WebAssembly.Module;
  /** planFull/planDelta plan IPVS mode (see forIPVS()). */
  #ipvs = false;
  readonly layoutVersion: number;

  private constructor(module: WebAssembly.Module, layoutVersion: number) {
    this.#module = module;
    this.layoutVersion = layoutVersion;
  }

  /** Compiles the planner module (the built-in one unless bytes are given) and checks its ABI. */
  static async load(bytes?: Uint8Array<ArrayBuffer>): Promise<Planner> {
    let module: WebAssembly.Module;
    try {
      module = await WebAssembly.compile(bytes ?? decodeBase64(PLANNER_WASM_BASE64));
    } catch (e) {
      throw new PlannerError("Cannot load the planner: invalid WebAssembly module", { cause: e });
    }
    const probe = new Planner(module, 0);
    let version: number | null;
    let layout = 0;
    try {
      const ex = probe.#instantiate(() => {});
      version = typeof ex.abiVersion === "function" ? ex.abiVersion() : null;
      if (version === ABI_VERSION) layout = ex.layoutVersion();
    } catch (e) {
      throw new PlannerError("Cannot load the planner: the module does not start", { cause: e });
    }
    // Nothing else is asked of a module of another version: its exports may mean other things.
    if (version !== ABI_VERSION) throw new PlannerVersionError(version, ABI_VERSION);
    return new Planner(module, layout);
  }

  #instantiate(onAbort: (msg: string) => void): PlannerExports {
    // The memory is known only once the instance exists; abort() reads it then.
    const mem: { memory?: WebAssembly.Memory } = {};
    const instance = new WebAssembly.Instance(this.#module, {
      env: {
        abort(msg: number, file: number, line: number, col: number) {
          const memory = mem.memory;
          const text = memory
            ? `${readASString(memory, msg)} (${readASString(memory, file)}:${line}:${col})`
            : "abort";
          onAbort(text);
          throw new PlannerError(`planner aborted: ${text}`);
        },
      },
    });
    const ex = instance.exports as unknown as PlannerExports;
    mem.memory = ex.memory;
    return ex;
  }

  #run(input: Uint8Array): PlanOutput;
  #run(input: Uint8Array, ipvs: true): IPVSPlanOutput;
  #run(input: Uint8Array, ipvs = false): PlanOutput {
    // A new instance for every plan: nothing survives from one plan to the
    // next, least of all the memory of an instance that trapped (possibly
    // half-written; the module's allocator never frees). Compiling is done
    // once, in load(); an instance costs about 0.3 ms (its 1 MiB of memory).
    let aborted = "";
    const ex = this.#instantiate((m) => aborted = m);
    try {
      const ptr = ex.allocInput(input.length);
      new Uint8Array(ex.memory.buffer, ptr, input.length).set(input);
      const len = ipvs ? ex.planIPVS() : ex.plan();
      const reader = new OutputReader(new Uint8Array(ex.memory.buffer, ex.outputPtr(), len));
      // A copy: the module's memory goes away with its instance.
      const batch = new Uint8Array(ex.memory.buffer, ex.batchPtr(), ex.batchLen()).slice();
      const out = {
        batch,
        added: reader.strs(),
        removed: reader.strs(),
        warnings: reader.strs(),
        inputBytes: input.length,
      };
      if (!ipvs) return out;
      const withIPVS: IPVSPlanOutput = {
        ...out,
        ipvs: { records: reader.strs().map(parseIPVSRecord), addresses: reader.strs() },
      };
      return withIPVS;
    } catch (e) {
      throw new PlannerError(
        `Cannot plan: the planner failed${aborted ? `: ${aborted}` : ""}`,
        { cause: e },
      );
    }
  }

  /** The whole table, replacing what `inventory` says is in the kernel. */
  planFull(
    services: readonly (Service | EncodedService)[],
    ctx: PlanContext,
    inventory: Inventory,
    generation: number,
  ): PlanOutput {
    if (this.#ipvs) return this.planIPVSFull(services, ctx, inventory, generation);
    return this.#run(encodeFull(services, ctx, inventory, generation));
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
    const ex = this.#instantiate(() => {});
    const p = new Planner(this.#module, ex.ipvsLayoutVersion());
    p.#ipvs = true;
    return p;
  }
}
