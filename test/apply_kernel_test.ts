/**
 * The Applier against the real kernel: a batch nft refuses leaves the table
 * as it was; outside interference between apply and verification is caught
 * and the last good ruleset restored; `kpx cleanup`'s deleteTable removes only
 * kpx's table.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import {
  Applier,
  joinBatch,
  type Marker,
  type Nft,
  type NftCli,
  type TableState,
} from "../src/apply/mod.ts";
import { Logger } from "../src/log/mod.ts";
import { kpxMetrics } from "../src/metrics/mod.ts";
import { Planner } from "../src/planner/mod.ts";
import { ClusterState } from "../src/state/mod.ts";
import { ClusterGenerator } from "./cluster_gen.ts";
import { CONTEXT } from "./contexts.ts";
import { normalizeListing, SKIP_KERNEL, withKernelNamespace } from "./kernel.ts";
import { StateFeeder } from "./state_feeder.ts";

const planner = await Planner.load();
const quiet = new Logger({ write: () => {} });

/** Real nft, with a hook between apply and the next marker read. */
class InterferingNft implements Nft {
  beforeNextMarker: (() => Promise<void>) | undefined;
  sabotageNextApply = false;
  constructor(readonly real: NftCli) {}
  apply(batch: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.sabotageNextApply) {
      this.sabotageNextApply = false;
      // A command the kernel rejects at the very end of the batch: everything
      // before it must be rolled back by the kernel.
      const text = new TextDecoder().decode(joinBatch(batch)).replace(
        /\]\}\s*$/,
        ',{"delete":{"chain":{"family":"inet","table":"kpx","name":"no-such-chain"}}}]}',
      );
      return this.real.apply(new TextEncoder().encode(text));
    }
    return this.real.apply(batch);
  }
  readTable(): Promise<TableState> {
    return this.real.readTable();
  }
  async readMarker(layout: number): Promise<Marker> {
    const hook = this.beforeNextMarker;
    this.beforeNextMarker = undefined;
    if (hook) await hook();
    return this.real.readMarker(layout);
  }
  deleteTable(): Promise<boolean> {
    return this.real.deleteTable();
  }
}

function cluster(seed: number) {
  const gen = new ClusterGenerator(seed, { services: 15, maxEndpoints: 4 });
  const state = new ClusterState("node-a");
  const feeder = new StateFeeder(state);
  feeder.sync(gen);
  return { gen, state, feeder };
}

Deno.test({
  name: "kernel apply: a batch nft refuses leaves the table exactly as it was",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      const nft = new InterferingNft(ns.nft);
      const metrics = kpxMetrics();
      const { gen, state, feeder } = cluster(7);
      const applier = new Applier({ nft, planner, log: quiet, metrics });
      await applier.init();
      ok((await applier.sync(state, CONTEXT)).ok);
      const before = normalizeListing(await ns.listTable());
      for (let i = 0; i < 5; i++) gen.mutate();
      feeder.sync(gen);
      nft.sabotageNextApply = true;
      const r = await applier.sync(state, CONTEXT);
      equal(r.ok, false);
      ok(r.error?.message.startsWith("Cannot apply the nftables batch"), r.error?.message ?? "");
      deepEqual(
        normalizeListing(await ns.listTable()),
        before,
        "nothing of the refused batch is in the kernel",
      );
      equal(metrics.applyFailures.get(), 1);
      const retry = await applier.sync(state, CONTEXT);
      ok(retry.ok && retry.full, retry.error?.message ?? "");
    }),
});

Deno.test({
  name:
    "kernel apply: interference between apply and verification is caught and the last good ruleset restored",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      const nft = new InterferingNft(ns.nft);
      const metrics = kpxMetrics();
      const { gen, state, feeder } = cluster(8);
      const applier = new Applier({ nft, planner, log: quiet, metrics });
      await applier.init();
      ok((await applier.sync(state, CONTEXT)).ok);
      const good = normalizeListing(await ns.listTable(), { dropShared: true });
      for (let i = 0; i < 5; i++) gen.mutate();
      feeder.sync(gen);
      // Someone flushes the marker right after our transaction.
      nft.beforeNextMarker = async () => {
        await ns.runner.run(["nft", "flush", "set", "inet", "kpx", "generation-l1"]);
      };
      const r = await applier.sync(state, CONTEXT);
      equal(r.ok, false);
      ok(r.error?.message.includes("marker says 0"), r.error?.message ?? "");
      equal(r.restored, true);
      equal(metrics.rollbacks.get(), 1);
      deepEqual(
        normalizeListing(await ns.listTable(), { dropShared: true }),
        good,
        "the last good ruleset is back",
      );
      const next = await applier.sync(state, CONTEXT);
      ok(next.ok && next.full, next.error?.message ?? "");
      equal((await ns.nft.readMarker(1)).generation, next.generation);
    }),
});

Deno.test({
  name: "kernel apply: deleteTable removes kpx's table and nothing else",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      await ns.runner.run(["nft", "add", "table", "inet", "other"]);
      const { state } = cluster(9);
      const applier = new Applier({ nft: ns.nft, planner, log: quiet, metrics: kpxMetrics() });
      await applier.init();
      ok((await applier.sync(state, CONTEXT)).ok);
      equal(await ns.nft.deleteTable(), true);
      equal(await ns.nft.deleteTable(), false);
      const tables = new TextDecoder().decode(
        (await ns.runner.run(["nft", "list", "tables"])).stdout,
      );
      ok(tables.includes("inet other") && !tables.includes("inet kpx"), tables);
    }),
});
