/**
 * Property tests of the planner against the in-memory nftables:
 * - random and malformed clusters never make the planner fail, and every
 *   batch applies; planning twice gives the same bytes;
 * - a sequence of deltas leaves the same table as one full plan of the end
 *   state, and a full plan over an existing table replaces it exactly.
 * The same properties run against the real kernel in test/plan_kernel_test.ts.
 */
import { deepEqual, equal } from "node:assert/strict";
import { FakeNftables } from "../src/apply/nft_fake.ts";
import { EMPTY_INVENTORY, Planner, PlanSession } from "../src/planner/mod.ts";
import { CONTEXT } from "./contexts.ts";
import { ClusterState } from "../src/state/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { StateFeeder } from "./state_feeder.ts";

const planner = await Planner.load();

Deno.test("planner: 2000 random and malformed clusters plan without error, apply, and are deterministic", () => {
  let services = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const gen = new ClusterGenerator(seed, {
      services: 1 + seed % 12,
      maxEndpoints: 6,
      malformed: true,
      conflicts: true,
    });
    const state = new ClusterState("node-a");
    new StateFeeder(state).sync(gen);
    const list = state.services();
    services += list.length;
    const a = planner.planFull(list, CONTEXT, EMPTY_INVENTORY, seed);
    const b = planner.planFull(list, CONTEXT, EMPTY_INVENTORY, seed);
    equal(
      new TextDecoder().decode(a.batch),
      new TextDecoder().decode(b.batch),
      `seed ${seed}: not deterministic`,
    );
    try {
      new FakeNftables().apply(a.batch);
    } catch (e) {
      throw new Error(`seed ${seed}: batch rejected: ${(e as Error).message}`);
    }
  }
  // The generator must produce programmable services, or the test proves nothing.
  equal(services > 2000, true, `only ${services} services were programmable`);
});

/** The table a full plan of `state` makes from nothing. */
function freshSnapshot(state: ClusterState) {
  const nft = new FakeNftables();
  nft.apply(planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch);
  return nft.snapshot()!;
}

function withoutGeneration(
  s: { chains: Record<string, string[]>; sets: Record<string, string[]> },
) {
  const { ["generation-l1"]: _g, ...sets } = s.sets;
  return { chains: s.chains, sets };
}

Deno.test("planner: deltas converge to the full plan of the final state (200 random histories)", () => {
  let deltas = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const gen = new ClusterGenerator(seed * 7919, {
      services: 8,
      maxEndpoints: 5,
      conflicts: seed % 3 === 0,
    });
    const state = new ClusterState("node-a");
    const feeder = new StateFeeder(state);
    feeder.sync(gen);
    const nft = new FakeNftables();
    const session = new PlanSession(planner);
    let p = session.plan(state, CONTEXT);
    nft.apply(p.output.batch);
    p.commit();
    for (let step = 0; step < 25; step++) {
      gen.mutate();
      feeder.sync(gen);
      // Every tenth step is a periodic full resync over the existing table.
      p = session.plan(state, CONTEXT, { full: step % 10 === 9 });
      try {
        nft.apply(p.output.batch);
      } catch (e) {
        throw new Error(
          `seed ${seed} step ${step} (${p.full ? "full" : "delta"}): ${(e as Error).message}`,
        );
      }
      p.commit();
      if (!p.full) deltas++;
    }
    const got = withoutGeneration(nft.snapshot()!);
    const want = withoutGeneration(freshSnapshot(state));
    // Deltas never delete shared pick/slot chains (a full sync collects them);
    // everything else must be identical.
    for (const [name, rules] of Object.entries(want.chains)) {
      deepEqual(got.chains[name], rules, `seed ${seed}: chain ${name}`);
    }
    for (const name of Object.keys(got.chains)) {
      if (!(name in want.chains) && !/^(slot|pick)-/.test(name)) {
        throw new Error(`seed ${seed}: chain ${name} left behind`);
      }
    }
    deepEqual(got.sets, want.sets, `seed ${seed}: sets and maps differ`);
    deepEqual(
      Object.keys(nft.snapshot()!.sets).sort(),
      Object.keys(freshSnapshot(state).sets).sort(),
    );
    deepEqual(session.inventory.chains, nft.chainNames(), `seed ${seed}: chains out of step`);
    deepEqual(
      session.inventory.sets,
      nft.setNames().filter((n) => n.startsWith("affinity-ep-")),
      `seed ${seed}: sets out of step`,
    );
  }
  equal(deltas > 3000, true, `only ${deltas} deltas were exercised`);
});

Deno.test("planner: a full plan over an existing table replaces it exactly and keeps affinity sets", () => {
  for (let seed = 1; seed <= 100; seed++) {
    const gen = new ClusterGenerator(seed * 31, { services: 10, maxEndpoints: 4 });
    const state = new ClusterState("node-a");
    const feeder = new StateFeeder(state);
    feeder.sync(gen);
    const nft = new FakeNftables();
    const session = new PlanSession(planner);
    const first = session.plan(state, CONTEXT);
    nft.apply(first.output.batch);
    first.commit();
    for (let i = 0; i < 5; i++) gen.mutate();
    feeder.sync(gen);
    const second = session.plan(state, CONTEXT, { full: true });
    nft.apply(second.output.batch);
    second.commit();
    deepEqual(
      withoutGeneration(nft.snapshot()!),
      withoutGeneration(freshSnapshot(state)),
      `seed ${seed}`,
    );
  }
});
