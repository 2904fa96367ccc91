/**
 * The Planner runs every call on the memory the last call used, without
 * zeroing it (src/planner/planner.ts#call). That is sound only if the
 * module's output depends on its input alone, never on what its memory held
 * before: checked here on the module itself, each input planned once on a
 * fresh memory and once on a memory filled with garbage, for full-sync parts
 * and heads, deltas and IPVS mode, over random and malformed clusters.
 */
import { deepEqual, ok } from "node:assert/strict";
import {
  encodeDelta,
  encodeFull,
  encodeFullHead,
  encodeFullParts,
  encodeService,
} from "../src/planner/encode.ts";
import { EMPTY_INVENTORY, type PlanContext } from "../src/planner/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { plannerBytes } from "./plan_wasm.ts";
import { StateFeeder } from "./state_feeder.ts";

const module = await WebAssembly.compile(plannerBytes());

interface Exports {
  allocInput(n: number): number;
  plan(): number;
  planIPVS(): number;
  outputPtr(): number;
  batchPtr(): number;
  batchLen(): number;
}

/** Runs one input on `memory` in a new instance; the batch and side output, copied. */
function run(memory: WebAssembly.Memory, input: Uint8Array, ipvs: boolean): Uint8Array[] {
  const { exports } = new WebAssembly.Instance(module, {
    env: {
      memory,
      abort() {
        throw new Error("planner aborted");
      },
    },
  });
  const ex = exports as unknown as Exports;
  new Uint8Array(memory.buffer, ex.allocInput(input.length), input.length).set(input);
  const len = ipvs ? ex.planIPVS() : ex.plan();
  return [
    new Uint8Array(memory.buffer, ex.batchPtr(), ex.batchLen()).slice(),
    new Uint8Array(memory.buffer, ex.outputPtr(), len).slice(),
  ];
}

/** A memory of `pages` filled with bytes that are neither zero nor regular. */
function garbage(pages: number, seed: number): WebAssembly.Memory {
  const memory = new WebAssembly.Memory({ initial: pages });
  const bytes = new Uint8Array(memory.buffer);
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return memory;
}

function sameOnGarbage(input: Uint8Array, ipvs: boolean, seed: number, what: string): void {
  const fresh = run(new WebAssembly.Memory({ initial: 16 }), input, ipvs);
  // Larger than the module starts with, so that growing memory also meets garbage.
  const dirty = run(garbage(96, seed), input, ipvs);
  deepEqual(dirty, fresh, `${what}: the output depends on what the memory held`);
}

const IPVS_CONTEXT: PlanContext = {
  ...CONTEXT,
  ipvs: { scheduler: "rr", nodeIPs: ["192.0.2.10"] },
};

Deno.test("planner module: output does not depend on what its memory held before", () => {
  let inputs = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const gen = new ClusterGenerator(seed * 131, {
      services: 1 + seed % 10,
      maxEndpoints: 1 + seed % 6,
      malformed: seed % 2 === 0,
      conflicts: seed % 3 === 0,
    });
    const feeder = StateFeeder.fed(gen);
    const state = feeder.state;
    const before = state.services();
    for (const part of encodeFullParts(before, CONTEXT, 1, 512)) {
      sameOnGarbage(part.slice(), false, seed, `seed ${seed}: a full sync's part`);
      inputs++;
    }
    const head = encodeFullHead(CONTEXT, EMPTY_INVENTORY, 1, {
      added: ["chain:affinity-x"],
      sets: [],
      shared: [],
    });
    sameOnGarbage(head, false, seed, `seed ${seed}: a head`);
    sameOnGarbage(
      encodeFull(before, IPVS_CONTEXT, EMPTY_INVENTORY, 1),
      true,
      seed,
      `seed ${seed}: IPVS full`,
    );
    const old = new Map(before.map((s) => [s.id, s]));
    gen.mutate();
    gen.mutate();
    feeder.sync(gen);
    const now = new Map(state.services().map((s) => [s.id, s]));
    const changes = [...new Set([...old.keys(), ...now.keys()])].map((id) => ({
      old: old.has(id) ? encodeService(old.get(id)!) : null,
      now: now.has(id) ? encodeService(now.get(id)!) : null,
    }));
    sameOnGarbage(
      encodeDelta(changes, CONTEXT, EMPTY_INVENTORY, 2),
      false,
      seed,
      `seed ${seed}: a delta`,
    );
    inputs += 3;
  }
  ok(inputs >= 60 * 4, `only ${inputs} inputs were checked`);
});
