/**
 * A full nftables sync is planned in parts, each on the same module memory,
 * then joined behind a head (src/planner/planner.ts#planParts). Whatever the
 * part size, the batch holds the same commands as one part would, applies
 * to the same table, and the planner's memory stays what one part needs:
 * a cluster that cannot be planned in one call under a memory cap plans in
 * small parts under the same cap. (The kernel fuzz in plan_kernel_test.ts
 * loads and resyncs with one service per part against a one-part reference.)
 */
import { deepEqual, ok, throws } from "node:assert/strict";
import { FakeNftables } from "../src/apply/nft_fake.ts";
import { EMPTY_INVENTORY, nextInventory, Planner, PlannerError } from "../src/planner/mod.ts";
import { syntheticServices } from "../bench/synthetic.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { fixtureNames, planFixture } from "./plan_fixtures.ts";
import { StateFeeder } from "./state_feeder.ts";

/** Large enough that every cluster here is one part. */
const whole = await Planner.load(undefined, { partBytes: 2 ** 30 });
const perService = await Planner.load(undefined, { partBytes: 1 });
const smallParts = await Planner.load(undefined, { partBytes: 2048 });

/** The batch's commands, with element lists split into one command per element, sorted. */
function commands(batch: Uint8Array): string[] {
  const doc = JSON.parse(new TextDecoder().decode(batch)) as {
    nftables: Record<string, Record<string, Record<string, unknown>>>[];
  };
  const out: string[] = [];
  for (const c of doc.nftables) {
    const verb = Object.keys(c)[0]!;
    const kind = Object.keys(c[verb]!)[0]!;
    const body = c[verb]![kind]!;
    if (kind === "element" && Array.isArray(body["elem"])) {
      for (const e of body["elem"]) {
        out.push(`${verb} element ${body["name"]} ${JSON.stringify(e)}`);
      }
    } else {
      out.push(JSON.stringify(c));
    }
  }
  return out.sort();
}

function applied(batch: Uint8Array, over?: Uint8Array) {
  const t = new FakeNftables();
  if (over) t.apply(over);
  t.apply(batch);
  return t.snapshot();
}

Deno.test("planFull() in parts: every fixture plans the same commands and table as in one part", async () => {
  for (const name of fixtureNames()) {
    const { services, context } = await planFixture(name);
    const one = whole.planFull(services, context, EMPTY_INVENTORY, 1);
    for (const parted of [perService, smallParts]) {
      const many = parted.planFull(services, context, EMPTY_INVENTORY, 1);
      deepEqual(commands(many.batch), commands(one.batch), `${name}: commands differ`);
      deepEqual(applied(many.batch), applied(one.batch), `${name}: tables differ`);
      deepEqual(many.added.toSorted(), one.added.toSorted(), `${name}: added differs`);
      deepEqual(many.warnings.toSorted(), one.warnings.toSorted(), `${name}: warnings differ`);
    }
  }
});

Deno.test("planFull() in parts: random clusters, and full resyncs over their tables, match one part", () => {
  let parts = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const gen = new ClusterGenerator(seed * 31, {
      services: 2 + seed % 15,
      maxEndpoints: 1 + seed % 6,
      malformed: seed % 2 === 0,
      conflicts: seed % 3 === 0,
    });
    const feeder = StateFeeder.fed(gen);
    const state = feeder.state;
    const first = whole.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1);
    const inventory = nextInventory(EMPTY_INVENTORY, first, whole.layoutVersion);
    gen.mutate();
    feeder.sync(gen);
    const services = state.services();
    const one = whole.planFull(services, CONTEXT, inventory, 2);
    const many = perService.planFull(services, CONTEXT, inventory, 2);
    parts += services.length;
    deepEqual(commands(many.batch), commands(one.batch), `seed ${seed}: commands differ`);
    deepEqual(
      applied(many.batch, first.batch),
      applied(one.batch, first.batch),
      `seed ${seed}: the resync's tables differ`,
    );
    deepEqual(many.removed.toSorted(), one.removed.toSorted(), `seed ${seed}: removed differs`);
    deepEqual(
      nextInventory(inventory, many, whole.layoutVersion),
      nextInventory(inventory, one, whole.layoutVersion),
      `seed ${seed}: the inventories after the resync differ`,
    );
  }
  ok(parts > 1000, `only ${parts} services were planned one per part`);
});

Deno.test("planFull() in parts: the planner's memory holds one part, not the cluster", async () => {
  // 3000 services x 10 endpoints take ~20 MiB planned in one call; a part of
  // 64 KiB of input (~150 services) takes well under 8 MiB.
  const services = syntheticServices(3000, 10);
  const cap = { memoryLimitPages: 128 }; // 8 MiB
  const capped = await Planner.load(undefined, { ...cap, partBytes: 64 * 1024 });
  const cappedWhole = await Planner.load(undefined, { ...cap, partBytes: 2 ** 30 });
  throws(
    () => cappedWhole.planFull(services, CONTEXT, EMPTY_INVENTORY, 1),
    (e: unknown) => e instanceof PlannerError,
    "one call for the whole cluster fits in 8 MiB: the test proves nothing",
  );
  const parted = capped.planFull(services, CONTEXT, EMPTY_INVENTORY, 1);
  const one = whole.planFull(services, CONTEXT, EMPTY_INVENTORY, 1);
  deepEqual(commands(parted.batch), commands(one.batch));
});

Deno.test("planFull() in parts: an empty cluster is the head alone", () => {
  const out = perService.planFull([], CONTEXT, EMPTY_INVENTORY, 1);
  deepEqual(commands(out.batch), commands(whole.planFull([], CONTEXT, EMPTY_INVENTORY, 1).batch));
  ok(applied(out.batch), "the head alone applies");
});
