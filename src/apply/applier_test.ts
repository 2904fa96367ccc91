import { deepEqual, equal, ok } from "node:assert/strict";
import { Logger } from "../log/mod.ts";
import { kpxMetrics } from "../metrics/mod.ts";
import { EMPTY_INVENTORY, Planner } from "../planner/mod.ts";
import { ClusterState } from "../state/mod.ts";
import { ClusterGenerator } from "../../test/cluster_gen.ts";
import { StateFeeder } from "../../test/state_feeder.ts";
import { CONTEXT } from "../../test/contexts.ts";
import { Applier } from "./applier.ts";
import { FakeNft } from "./nft.ts";
import { FakeNftables } from "./nft_fake.ts";

const planner = await Planner.load();
const quiet = new Logger({ write: () => {} });

function setup(seed = 1) {
  const gen = new ClusterGenerator(seed, { services: 12, maxEndpoints: 4 });
  const state = new ClusterState("node-a");
  const feeder = new StateFeeder(state);
  feeder.sync(gen);
  const nft = new FakeNft();
  const metrics = kpxMetrics();
  const applier = new Applier({ nft, planner, log: quiet, metrics });
  return { gen, state, feeder, nft, metrics, applier };
}

function fresh(state: ClusterState) {
  const t = new FakeNftables();
  t.apply(planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch);
  const s = t.snapshot()!;
  delete s.sets["generation-l1"];
  return s;
}

function current(nft: FakeNft) {
  const s = nft.table.snapshot()!;
  delete s.sets["generation-l1"];
  // Deltas keep shared pick/slot chains a full sync would collect.
  for (const c of Object.keys(s.chains)) if (/^(slot|pick)-/.test(c)) delete s.chains[c];
  return s;
}

function withoutShared(s: ReturnType<typeof fresh>) {
  for (const c of Object.keys(s.chains)) if (/^(slot|pick)-/.test(c)) delete s.chains[c];
  return s;
}

Deno.test("Applier: first sync is full, then deltas; generations rise and the marker matches", async () => {
  const { gen, state, feeder, nft, applier } = setup();
  await applier.init();
  const first = await applier.sync(state, CONTEXT);
  ok(first.ok && first.full, `first sync: ${first.error?.message}`);
  for (let i = 0; i < 10; i++) {
    gen.mutate();
    feeder.sync(gen);
    const r = await applier.sync(state, CONTEXT);
    ok(r.ok, `sync ${i}: ${r.error?.message}`);
    equal(r.full, false);
    equal(r.generation, first.generation + i + 1);
  }
  equal((await nft.readMarker(1)).generation, applier.session.generation);
  deepEqual(current(nft), withoutShared(fresh(state)));
});

Deno.test("Applier: a batch the kernel refuses changes nothing, and the next sync converges", async () => {
  const { gen, state, feeder, nft, metrics, applier } = setup(2);
  await applier.init();
  ok((await applier.sync(state, CONTEXT)).ok);
  const before = nft.table.snapshot();
  gen.mutate();
  gen.mutate();
  feeder.sync(gen);
  nft.failNextApplies = 1;
  const failed = await applier.sync(state, CONTEXT);
  equal(failed.ok, false);
  ok(failed.error?.message.includes("injected"));
  deepEqual(nft.table.snapshot(), before, "a refused batch must leave the table untouched");
  equal(metrics.applyFailures.get(), 1);
  const retry = await applier.sync(state, CONTEXT);
  ok(retry.ok, retry.error?.message ?? "");
  equal(retry.full, true, "after a failure the next sync is full");
  deepEqual(current(nft), withoutShared(fresh(state)));
});

Deno.test("Applier: a failed verification restores the last good ruleset, then the next sync applies the new state", async () => {
  const { gen, state, feeder, nft, metrics, applier } = setup(3);
  await applier.init();
  ok((await applier.sync(state, CONTEXT)).ok);
  const good = current(nft);
  for (let i = 0; i < 3; i++) gen.mutate();
  feeder.sync(gen);
  nft.corruptNextMarker = 999;
  const r = await applier.sync(state, CONTEXT);
  equal(r.ok, false);
  ok(r.error?.message.includes("marker says 999"), r.error?.message ?? "");
  equal(r.restored, true);
  equal(metrics.verifyFailures.get(), 1);
  equal(metrics.rollbacks.get(), 1);
  deepEqual(current(nft), good, "the last good ruleset is back");
  const next = await applier.sync(state, CONTEXT);
  ok(next.ok && next.full, next.error?.message ?? "");
  deepEqual(current(nft), withoutShared(fresh(state)));
});

Deno.test("Applier: a restarted kpx replaces the earlier table in one transaction and keeps counting generations", async () => {
  const { gen, state, feeder, nft, applier } = setup(4);
  await applier.init();
  ok((await applier.sync(state, CONTEXT)).ok);
  for (let i = 0; i < 4; i++) {
    gen.mutate();
    feeder.sync(gen);
    ok((await applier.sync(state, CONTEXT)).ok);
  }
  const lastGeneration = applier.session.generation;
  // A new process: same kernel table, new state built from scratch.
  const state2 = new ClusterState("node-a");
  new StateFeeder(state2).sync(gen);
  const restarted = new Applier({ nft, planner, log: quiet, metrics: kpxMetrics() });
  const table = await restarted.init();
  equal(table.generation, lastGeneration);
  const applied = nft.table.applied;
  const r = await restarted.sync(state2, CONTEXT);
  ok(r.ok && r.full, r.error?.message ?? "");
  equal(nft.table.applied, applied + 1, "one transaction");
  ok(r.generation > lastGeneration);
  deepEqual(current(nft), withoutShared(fresh(state2)));
});

Deno.test("Applier: a table of another layout (or without a marker) is replaced whole", async () => {
  const { state, nft, applier } = setup(5);
  nft.table.apply(JSON.stringify({
    nftables: [
      { add: { table: { family: "inet", name: "kpx" } } },
      { add: { chain: { family: "inet", table: "kpx", name: "something-old" } } },
      { add: { set: { family: "inet", table: "kpx", name: "service-ips4", type: "ipv4_addr" } } },
    ],
  }));
  await applier.init();
  const r = await applier.sync(state, CONTEXT);
  ok(r.ok, r.error?.message ?? "");
  ok(!nft.table.chainNames().includes("something-old"));
  deepEqual(current(nft), withoutShared(fresh(state)));
});

Deno.test("Applier: verification counts the affinity sets too; one missing fails it and restores", async () => {
  // The first generated cluster whose table holds an affinity set.
  let s = setup(1);
  for (let seed = 2; seed < 200; seed++) {
    await s.applier.init();
    ok((await s.applier.sync(s.state, CONTEXT)).ok);
    if (s.applier.session.inventory.sets.some((n) => n.startsWith("affinity-ep-"))) break;
    s = setup(seed);
  }
  const { state, nft, metrics, applier } = s;
  const affinity = applier.session.inventory.sets.filter((n) => n.startsWith("affinity-ep-"));
  ok(affinity.length > 0, "some generated cluster has a ClientIP affinity service");
  const good = current(nft);
  nft.hideNextMarkerSet = affinity[0];
  const r = await applier.sync(state, CONTEXT, { full: true });
  equal(r.ok, false);
  ok(
    r.error?.message.includes(`affinity sets in the kernel`) &&
      r.error.message.includes(`missing ${affinity[0]}`),
    r.error?.message ?? "",
  );
  equal(r.restored, true);
  equal(metrics.verifyFailures.get(), 1);
  deepEqual(current(nft), good, "the last good ruleset is back");
  ok((await applier.sync(state, CONTEXT)).ok, "the next sync verifies");
});
