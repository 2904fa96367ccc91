/**
 * IPVS mode's nftables side against the real kernel, in throwaway namespaces
 * (the host kernel has nftables but no IPVS; the IPVS side is the in-memory
 * FakeIpvs here, and real in test/e2e/ipvs_mode_test.ts): every golden batch
 * loads and reads back; random histories of delta syncs through the
 * IPVSApplier end in the same table as a fresh full load; switching between
 * nftables mode and IPVS mode replaces the table in one transaction.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { Applier, FakeIpvs, FakeLink, IPVSApplier } from "../src/apply/mod.ts";
import { Logger } from "../src/log/mod.ts";
import { kpxMetrics } from "../src/metrics/mod.ts";
import { EMPTY_INVENTORY, type PlanContext, Planner } from "../src/planner/mod.ts";
import { ClusterState } from "../src/state/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { normalizeListing, SKIP_KERNEL, withKernelNamespace } from "./kernel.ts";
import { ipvsFixtureNames, planIPVSFixture } from "./plan_ipvs_fixtures.ts";
import { StateFeeder } from "./state_feeder.ts";

const planner = await Planner.load();
const ipvsLayout = planner.forIPVS().layoutVersion;
const quiet = new Logger({ write: () => {} });
const CTX: PlanContext = {
  ...CONTEXT,
  ipvs: { scheduler: "rr", nodeIPs: ["192.0.2.10", "2001:db8::10"] },
};

Deno.test({
  name: "kernel: every IPVS-mode golden batch loads with nft -j -f and lists back",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      for (const name of ipvsFixtureNames()) {
        const plan = (await planIPVSFixture(name)).plan;
        await ns.nft.deleteTable();
        await ns.nft.apply(plan.batch);
        const marker = await ns.nft.readMarker(ipvsLayout);
        equal(marker.generation, 1, name);
        const chains = plan.added.filter((a) => a.startsWith("chain:")).map((a) => a.slice(6))
          .sort();
        deepEqual(marker.chains, chains, `${name}: chains`);
      }
    }),
});

Deno.test({
  name: "kernel: IPVS-mode delta histories end in the table a fresh full plan gives",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      for (const seed of [11, 12, 13]) {
        await ns.nft.deleteTable();
        const gen = new ClusterGenerator(seed, { services: 10, maxEndpoints: 4, conflicts: true });
        const state = new ClusterState("node-a");
        const feeder = new StateFeeder(state);
        feeder.sync(gen);
        const applier = new IPVSApplier({
          nft: ns.nft,
          ipvs: new FakeIpvs(),
          link: new FakeLink(),
          planner,
          log: quiet,
          metrics: kpxMetrics(),
        });
        await applier.init();
        for (let i = 0; i < 12; i++) {
          const r = await applier.sync(state, CTX);
          ok(r.ok, `seed ${seed} sync ${i}: ${r.error?.message}`);
          equal(r.full, i === 0);
          gen.mutate();
          feeder.sync(gen);
        }
        ok((await applier.sync(state, CTX)).ok);
        const afterDeltas = normalizeListing(await ns.listTable());
        await ns.nft.deleteTable();
        await ns.nft.apply(planner.planIPVSFull(state.services(), CTX, EMPTY_INVENTORY, 1).batch);
        const fresh = normalizeListing(await ns.listTable());
        // Deltas never delete hairpin pairs (another service may share one):
        // the ones they keep are a superset, dropped by the next full sync.
        for (const key of ["set hairpin4", "set hairpin6"]) {
          const kept = new Set(afterDeltas[key] as string[]);
          for (const e of fresh[key] as string[]) {
            ok(kept.has(e), `seed ${seed}: ${key} lacks ${e}`);
          }
          delete afterDeltas[key];
          delete fresh[key];
        }
        deepEqual(afterDeltas, fresh, `seed ${seed}`);
      }
    }),
});

Deno.test({
  name:
    "kernel: switching nftables mode -> IPVS mode -> nftables mode replaces the table each time",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      const gen = new ClusterGenerator(21, { services: 8, maxEndpoints: 3 });
      const state = new ClusterState("node-a");
      new StateFeeder(state).sync(gen);
      const nftMode = () =>
        new Applier({ nft: ns.nft, planner, log: quiet, metrics: kpxMetrics() });
      const ipvsMode = () =>
        new IPVSApplier({
          nft: ns.nft,
          ipvs: new FakeIpvs(),
          link: new FakeLink(),
          planner,
          log: quiet,
          metrics: kpxMetrics(),
        });
      for (const make of [nftMode, ipvsMode, nftMode]) {
        const a = make();
        await a.init();
        const r = await a.sync(state, CTX);
        ok(r.ok, r.error?.message ?? "");
        const t = await ns.nft.readTable();
        const layout = a instanceof IPVSApplier ? ipvsLayout : 1;
        equal(t.layout, layout);
        const fresh = a instanceof IPVSApplier
          ? planner.planIPVSFull(state.services(), CTX, EMPTY_INVENTORY, 1)
          : planner.planFull(state.services(), CTX, EMPTY_INVENTORY, 1);
        const listed = normalizeListing(await ns.listTable());
        await ns.nft.deleteTable();
        await ns.nft.apply(fresh.batch);
        deepEqual(
          listed,
          normalizeListing(await ns.listTable()),
          `after switching to layout ${layout}`,
        );
      }
    }),
});
