/**
 * The planner's batches against the real kernel, in throwaway namespaces:
 * every golden batch loads with `nft -j -f` and reads back; random and
 * malformed clusters always load; random histories of deltas applied through
 * the Applier end in the same table as a fresh full load.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { Applier } from "../src/apply/mod.ts";
import { Logger } from "../src/log/mod.ts";
import { kpxMetrics } from "../src/metrics/mod.ts";
import { EMPTY_INVENTORY, Planner } from "../src/planner/mod.ts";
import { ClusterState } from "../src/state/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { normalizeListing, SKIP_KERNEL, withKernelNamespace } from "./kernel.ts";
import { fixtureNames, planFixture } from "./plan_fixtures.ts";
import { StateFeeder } from "./state_feeder.ts";

const planner = await Planner.load();
const quiet = new Logger({ write: () => {} });

Deno.test({
  name: "kernel: every golden batch loads with nft -j -f and lists back",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      for (const name of fixtureNames()) {
        const plan = (await planFixture(name)).plan;
        await ns.nft.deleteTable();
        await ns.nft.apply(plan.batch);
        const listing = await ns.listTable();
        ok(listing && listing.length > 40, `${name}: table not listed back`);
        // Everything the batch declared is in the kernel.
        const marker = await ns.nft.readMarker(1);
        equal(marker.generation, 1, name);
        const chains = plan.added.filter((a) => a.startsWith("chain:")).map((a) => a.slice(6))
          .sort();
        deepEqual(marker.chains, chains, `${name}: chains`);
      }
    }),
});

Deno.test({
  name: "kernel: 300 random and malformed clusters all load",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      for (let seed = 1; seed <= 300; seed++) {
        const gen = new ClusterGenerator(seed * 13, {
          services: 1 + seed % 9,
          maxEndpoints: 5,
          malformed: true,
          conflicts: true,
        });
        const state = new ClusterState("node-a");
        new StateFeeder(state).sync(gen);
        await ns.nft.deleteTable();
        try {
          await ns.nft.apply(
            planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, seed).batch,
          );
        } catch (e) {
          throw new Error(`seed ${seed}: the kernel refused the batch`, { cause: e });
        }
      }
    }),
});

Deno.test({
  name: "kernel: delta histories through the Applier end in the table a full load makes",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace((live) =>
      withKernelNamespace(async (reference) => {
        for (let seed = 1; seed <= 12; seed++) {
          const gen = new ClusterGenerator(seed * 101, { services: 10, maxEndpoints: 5 });
          const state = new ClusterState("node-a");
          const feeder = new StateFeeder(state);
          feeder.sync(gen);
          await live.nft.deleteTable();
          const applier = new Applier({
            nft: live.nft,
            planner,
            log: quiet,
            metrics: kpxMetrics(),
          });
          await applier.init();
          ok((await applier.sync(state, CONTEXT)).ok);
          for (let step = 0; step < 15; step++) {
            gen.mutate();
            feeder.sync(gen);
            const r = await applier.sync(state, CONTEXT);
            ok(r.ok, `seed ${seed} step ${step}: ${r.error?.message}`);
          }
          await reference.nft.deleteTable();
          await reference.nft.apply(
            planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch,
          );
          deepEqual(
            normalizeListing(await live.listTable(), { dropShared: true }),
            normalizeListing(await reference.listTable(), { dropShared: true }),
            `seed ${seed}`,
          );
        }
      })
    ),
});
