/**
 * The planner ABI is versioned both ways: the host refuses a module of
 * another version (PlannerVersionError naming both), and the module refuses
 * an input buffer of another version.
 */
import { equal, ok, rejects, throws } from "node:assert/strict";
import {
  ABI_VERSION,
  EMPTY_INVENTORY,
  Planner,
  PlannerError,
  PlannerVersionError,
} from "../src/planner/mod.ts";
import { encodeDelta } from "../src/planner/encode.ts";
import { CONTEXT } from "./contexts.ts";
import { constModule, plannerBytes, withConstant } from "./plan_wasm.ts";

const LAYOUT = (await Planner.load()).layoutVersion;

async function refusal(bytes: Uint8Array<ArrayBuffer>): Promise<PlannerVersionError> {
  let err: unknown;
  await rejects(
    Planner.load(bytes).catch((e) => {
      err = e;
      throw e;
    }),
  );
  ok(err instanceof PlannerVersionError, `not a PlannerVersionError: ${err}`);
  ok(err instanceof PlannerError, "callers catching PlannerError catch it too");
  return err;
}

Deno.test("Planner.load() refuses a hand-written module reporting another ABI version", async () => {
  const e = await refusal(constModule({ abiVersion: ABI_VERSION + 97, layoutVersion: LAYOUT }));
  equal(e.moduleVersion, ABI_VERSION + 97);
  equal(e.hostVersion, ABI_VERSION);
  equal(
    e.message,
    `Cannot load the planner: module ABI version ${
      ABI_VERSION + 97
    }, this kpx needs ${ABI_VERSION}`,
  );
});

Deno.test("Planner.load() refuses the real planner patched to report the next ABI version", async () => {
  const real = plannerBytes();
  // The patch itself is harmless: the same version patched in plans as before.
  const same = await Planner.load(withConstant(real, "abiVersion", ABI_VERSION));
  const reference = await Planner.load(real);
  equal(
    new TextDecoder().decode(same.planFull([], CONTEXT, EMPTY_INVENTORY, 1).batch),
    new TextDecoder().decode(reference.planFull([], CONTEXT, EMPTY_INVENTORY, 1).batch),
  );
  for (const v of [ABI_VERSION + 1, ABI_VERSION - 1, -1]) {
    const e = await refusal(withConstant(real, "abiVersion", v));
    equal(e.moduleVersion, v);
    equal(e.hostVersion, ABI_VERSION);
    ok(e.message.includes(`module ABI version ${v}`), e.message);
    ok(e.message.includes(`this kpx needs ${ABI_VERSION}`), e.message);
  }
});

Deno.test("Planner.load() refuses a module without abiVersion(), and bytes that are no module", async () => {
  const e = await refusal(constModule({ layoutVersion: LAYOUT }));
  equal(e.moduleVersion, null);
  ok(e.message.includes("module ABI version none"), e.message);
  await rejects(Planner.load(new Uint8Array([1, 2, 3])), (e: unknown) => {
    ok(e instanceof PlannerError && !(e instanceof PlannerVersionError));
    ok(e.message.startsWith("Cannot load the planner: invalid WebAssembly module"), e.message);
    return true;
  });
});

Deno.test("the planner module aborts on an input buffer of another ABI version", async () => {
  const module = await WebAssembly.compile(plannerBytes());
  const plan = (input: Uint8Array) => {
    let aborted = "";
    // The module imports its memory (16 pages to start, as wasm/asconfig.json says).
    const memory = new WebAssembly.Memory({ initial: 16 });
    const { exports } = new WebAssembly.Instance(module, {
      env: {
        memory,
        abort(msg: number) {
          const view = new DataView(memory.buffer);
          const len = view.getUint32(msg - 4, true);
          aborted = new TextDecoder("utf-16le").decode(new Uint8Array(memory.buffer, msg, len));
          throw new Error(aborted);
        },
      },
    });
    const ex = exports as {
      allocInput(n: number): number;
      plan(): number;
    };
    new Uint8Array(memory.buffer, ex.allocInput(input.length), input.length).set(input);
    ex.plan();
    return aborted;
  };
  const input = encodeDelta([], CONTEXT, EMPTY_INVENTORY, 1).slice();
  equal(plan(input), "", "the unchanged input plans");
  // Bytes 4..8 hold the version, after the magic.
  new DataView(input.buffer).setUint32(4, ABI_VERSION + 1, true);
  throws(() => plan(input), /planner input: ABI version mismatch/);
});
