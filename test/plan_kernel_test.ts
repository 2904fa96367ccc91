/**
 * The planner's batches against the real kernel, in throwaway namespaces:
 * every golden batch loads with `nft -j -f` and reads back; thousands of
 * random and malformed clusters load, and their random histories of deltas
 * (planned by PlanSession, or applied through the Applier) end in the same
 * table as a fresh full load. The thousands run side by side, one table per
 * seed in one namespace, so that one nft run carries a hundred seeds' steps.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { Applier } from "../src/apply/mod.ts";
import { Logger } from "../src/log/mod.ts";
import { kpxMetrics } from "../src/metrics/mod.ts";
import { EMPTY_INVENTORY, nextInventory, Planner, PlanSession } from "../src/planner/mod.ts";
import { ClusterState } from "../src/state/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { type KernelNs, normalizeListing, SKIP_KERNEL, withKernelNamespace } from "./kernel.ts";
import { fixtureNames, planFixture } from "./plan_fixtures.ts";
import { StateFeeder } from "./state_feeder.ts";

const planner = await Planner.load();
/** Plans a full sync one service per part: the odd seeds' sessions use it (see fuzzGroup). */
const perService = await Planner.load(undefined, { partBytes: 1 });
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
  name: "kernel: every golden fixture's full resync over its own table loads (affinity sets kept)",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      for (const name of fixtureNames()) {
        const { services, context } = await planFixture(name);
        await ns.nft.deleteTable();
        const first = planner.planFull(services, context, EMPTY_INVENTORY, 1);
        await ns.nft.apply(first.batch);
        const before = normalizeListing(await ns.listTable());
        // nft has made the affinity sets dynamic by now (rules update them).
        const inventory = nextInventory(EMPTY_INVENTORY, first, planner.layoutVersion);
        const again = planner.planFull(services, context, inventory, 2);
        try {
          await ns.nft.apply(again.batch);
        } catch (e) {
          throw new Error(`${name}: the kernel refused the full resync`, { cause: e });
        }
        deepEqual(normalizeListing(await ns.listTable()), before, name);
        equal((await ns.nft.readMarker(1)).generation, 2, name);
      }
    }),
});

/**
 * The batch for table `name` instead of kpx: kpx's batches name their table
 * only as `"table":"kpx"` in each object and `"name":"kpx"` in the table's
 * own commands (user strings are JSON-escaped, so they cannot contain these).
 */
function retable(batch: Uint8Array, name: string): string {
  const body = new TextDecoder().decode(batch).replaceAll('"table":"kpx"', `"table":"${name}"`)
    .replaceAll('{"family":"inet","name":"kpx"}', `{"family":"inet","name":"${name}"}`);
  if (!body.startsWith('{"nftables":[') || !body.endsWith("]}")) {
    throw new TypeError(
      `Cannot merge a batch that is not one nftables array: ${body.slice(0, 40)}`,
    );
  }
  return body.slice(13, -2);
}

/** One transaction holding every seed's batch, each for its own table. */
function merged(parts: string[]): Uint8Array {
  return new TextEncoder().encode(`{"nftables":[${parts.filter((p) => p).join(",")}]}`);
}

/**
 * nft -j list table, for each table, a few nft processes at a time. (Listing
 * the whole ruleset instead takes time quadratic in the tables: 8 s for 100.)
 */
async function listTables(
  ns: KernelNs,
  tables: readonly string[],
): Promise<Map<string, unknown[]>> {
  const out = new Map<string, unknown[]>();
  let next = 0;
  const worker = async () => {
    while (next < tables.length) {
      const table = tables[next++]!;
      const r = await ns.runner.run(["nft", "-j", "list", "table", "inet", table]);
      if (r.code !== 0) throw new Error(`Cannot list table ${table} in ${ns.name}: ${r.stderr}`);
      out.set(
        table,
        (JSON.parse(new TextDecoder().decode(r.stdout)) as { nftables: unknown[] }).nftables,
      );
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return out;
}

interface Seed {
  seed: number;
  table: string;
  gen: ClusterGenerator;
  state: ClusterState;
  feeder: StateFeeder;
  session: PlanSession;
}

/** Applies one batch per seed in one nft run; on refusal, finds and names the seed. */
async function applyAll(
  ns: KernelNs,
  seeds: readonly Seed[],
  batches: readonly Uint8Array[],
  what: string,
): Promise<void> {
  const parts = seeds.map((s, i) => retable(batches[i]!, s.table));
  try {
    await ns.nft.apply(merged(parts));
  } catch (e) {
    // Nothing was applied: try each seed alone to say which one the kernel refuses.
    for (const [i, s] of seeds.entries()) {
      await ns.nft.apply(merged([parts[i]!])).catch((err) => {
        throw new Error(`seed ${s.seed} (${what}): the kernel refused the batch`, { cause: err });
      });
    }
    throw new Error(`${what}: the kernel refused the merged batch`, { cause: e });
  }
}

const FUZZ_SEEDS = 2000;
const FUZZ_STEPS = 8;
/** Seeds per nft run: tables side by side in one namespace. */
const FUZZ_GROUP = 100;

/** The seeds first, first + FUZZ_GROUP, ...: counts of what was checked. */
async function fuzzGroup(live: KernelNs, reference: KernelNs, first: number) {
  const seeds: Seed[] = [];
  for (let seed = first; seed < first + FUZZ_GROUP && seed <= FUZZ_SEEDS; seed++) {
    const gen = new ClusterGenerator(seed * 7727, {
      services: 1 + seed % 12,
      maxEndpoints: 1 + seed % 7,
      malformed: seed % 2 === 0,
      conflicts: seed % 3 === 0,
    });
    const feeder = StateFeeder.fed(gen);
    const state = feeder.state;
    // Odd seeds load and resync in parts of one service; the reference is
    // always planned in one part, so the comparison covers the joined batch.
    const session = new PlanSession(seed % 2 === 1 ? perService : planner);
    seeds.push({ seed, table: `kpx${seed}`, gen, state, feeder, session });
  }
  let deltas = 0, fulls = 0, chains = 0;
  // Step 0 loads each cluster whole; then random changes, as deltas, with one
  // full resync over the existing table halfway.
  for (let step = 0; step <= FUZZ_STEPS; step++) {
    const pending = seeds.map((s) => {
      if (step > 0) {
        s.gen.mutate();
        s.feeder.sync(s.gen);
      }
      return s.session.plan(s.state, CONTEXT, { full: step === FUZZ_STEPS / 2 });
    });
    await applyAll(live, seeds, pending.map((p) => p.output.batch), `step ${step}`);
    for (const p of pending) {
      p.commit();
      if (p.full) fulls++;
      else deltas++;
    }
  }
  await applyAll(
    reference,
    seeds,
    seeds.map((s) => planner.planFull(s.state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch),
    "reference",
  );
  const tables = seeds.map((s) => s.table);
  const [got, want] = await Promise.all([listTables(live, tables), listTables(reference, tables)]);
  for (const s of seeds) {
    const w = normalizeListing(want.get(s.table)!, { dropShared: true });
    chains += Object.keys(w).filter((k) => k.startsWith("chain ")).length;
    deepEqual(
      normalizeListing(got.get(s.table)!, { dropShared: true }),
      w,
      `seed ${s.seed}: the deltas' table differs from a full load`,
    );
    equal(
      s.session.inventory.chains.length,
      got.get(s.table)!.filter((o) => "chain" in (o as object)).length,
      `seed ${s.seed}: the session's inventory is out of step with the kernel`,
    );
  }
  const drop = merged(tables.map((t) => `{"delete":{"table":{"family":"inet","name":"${t}"}}}`));
  await Promise.all([live.nft.apply(drop), reference.nft.apply(drop)]);
  return { deltas, fulls, chains };
}

/** Groups run in two lanes, so that one plans while the other's nft runs. */
const FUZZ_LANES = 2;

Deno.test({
  name:
    `kernel: ${FUZZ_SEEDS} random and malformed clusters load, and ${FUZZ_STEPS} random deltas each end in the table a full load makes`,
  ignore: SKIP_KERNEL,
  fn: async () => {
    const total = { deltas: 0, fulls: 0, chains: 0 };
    let next = 1;
    const lane = () =>
      withKernelNamespace((live) =>
        withKernelNamespace(async (reference) => {
          while (next <= FUZZ_SEEDS) {
            const first = next;
            next += FUZZ_GROUP;
            const r = await fuzzGroup(live, reference, first);
            total.deltas += r.deltas;
            total.fulls += r.fulls;
            total.chains += r.chains;
          }
        })
      );
    await Promise.all(Array.from({ length: FUZZ_LANES }, lane));
    // Every seed was loaded, resynced and changed, or this proves little.
    equal(total.fulls, FUZZ_SEEDS * 2, "one full load and one full resync per seed");
    equal(total.deltas, FUZZ_SEEDS * (FUZZ_STEPS - 1));
    ok(total.chains > FUZZ_SEEDS * 5, `only ${total.chains} chains with rules were compared`);
  },
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
