/**
 * Apply benchmarks (issue 3): nft time of a full sync at 1k/10k services x 10
 * endpoints (fresh, and over an existing table as a periodic resync does),
 * a one-service delta on a 10k-service ruleset (target < 20 ms including the
 * nft process), and new TCP connections per second through the ClusterIPs
 * with 10 vs 10k services loaded (target: within 10%, O(1) dispatch),
 * measured as the comparison with kube-proxy's layouts measures it.
 */
import { NftCli, ProcessRunner } from "../src/apply/mod.ts";
import { EMPTY_INVENTORY, nextInventory, Planner } from "../src/planner/mod.ts";
import { openLayout } from "./compare_layouts.ts";
import { compareSettings } from "./compare_bench.ts";
import { measureDataplane } from "./dataplane.ts";
import { DataplaneTopology } from "./dataplane_topology.ts";
import { BENCH_CONTEXT } from "./plan_bench.ts";
import { type BenchReport, median } from "./report.ts";
import { syntheticService, syntheticServices } from "./synthetic.ts";
import type { Service } from "../src/state/mod.ts";
import { withNamespace } from "./netns.ts";

export async function applyBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const planner = await Planner.load();
  const runs = opts.quick ? 2 : 4;
  for (const n of [1000, 10000]) {
    const services = syntheticServices(n, 10);
    const fresh: number[] = [];
    const resync: number[] = [];
    for (let r = 0; r < runs; r++) {
      await withNamespace(async (ns) => {
        const nft = new NftCli(new ProcessRunner(["ip", "netns", "exec", ns]));
        const first = planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1);
        let t = performance.now();
        await nft.apply(first.batch);
        fresh.push(performance.now() - t);
        const inv = nextInventory(EMPTY_INVENTORY, first, planner.layoutVersion);
        const again = planner.planFull(services, BENCH_CONTEXT, inv, 2);
        t = performance.now();
        await nft.apply(again.batch);
        resync.push(performance.now() - t);
      });
    }
    report.add({
      suite: "apply",
      name: `full sync into an empty table, ${n / 1000}k services x 10 endpoints`,
      unit: "s",
      values: fresh.map((v) => v / 1000),
    });
    report.add({
      suite: "apply",
      name: `full resync over the existing table, ${n / 1000}k services`,
      unit: "s",
      values: resync.map((v) => v / 1000),
    });
  }

  // One-service deltas on a 10k-service ruleset.
  await withNamespace(async (ns) => {
    const nft = new NftCli(new ProcessRunner(["ip", "netns", "exec", ns]));
    const services = syntheticServices(10000, 10);
    const first = planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1);
    await nft.apply(first.batch);
    let inv = nextInventory(EMPTY_INVENTORY, first, planner.layoutVersion);
    let current: Service = services[42]!;
    let gen = 1;
    const applies: number[] = [];
    const verifies: number[] = [];
    for (let i = 0; i < (opts.quick ? 15 : 40); i++) {
      // Replace 2 of the 10 endpoints, as a rolling update does.
      const next = syntheticService(42, 10, false, (i + 1) * 2);
      const delta = planner.planDelta([{ old: current, now: next }], BENCH_CONTEXT, inv, ++gen);
      let t = performance.now();
      await nft.apply(delta.batch);
      applies.push(performance.now() - t);
      t = performance.now();
      await nft.readMarker(planner.layoutVersion);
      verifies.push(performance.now() - t);
      inv = nextInventory(inv, delta, planner.layoutVersion);
      current = next;
    }
    report.add({
      suite: "apply",
      name: "one-service delta on a 10k-service ruleset (nft -j -f, process included)",
      unit: "ms",
      values: applies,
      target: { max: 20, source: "issue 3" },
    });
    report.add({
      suite: "apply",
      name: "read-back verification after a delta",
      unit: "ms",
      values: verifies,
    });
  });

  // Connection rate through the ClusterIPs with 10 vs 10k services loaded:
  // the comparison's load generator and topology (bench/dataplane.ts), the
  // two sizes interleaved so that a busy moment of this shared machine
  // hits both alike.
  const rates: Record<number, number[]> = { 10: [], 10000: [] };
  const topo = await DataplaneTopology.create();
  try {
    for (let round = 0; round < (opts.quick ? 2 : 5); round++) {
      for (const n of round % 2 === 0 ? [10, 10000] : [10000, 10]) {
        const node = await topo.addNode();
        try {
          const layout = openLayout("kpx", planner, node, syntheticServices(n, 10));
          await layout.fullSync();
          const r = await measureDataplane(topo, node, {
            ...compareSettings(opts.quick).dataplane,
            services: n,
          });
          if (r.connections === 0) {
            throw new Error(
              `Cannot measure the connection rate with ${n} services: none succeeded`,
            );
          }
          rates[n]!.push(r.rate);
          await layout.flush();
        } finally {
          await topo.removeNode(node);
        }
      }
    }
  } finally {
    await topo.close();
  }
  report.add({
    suite: "apply",
    name: "new TCP connections/s through the ClusterIPs, 10 services loaded",
    unit: "conn/s",
    values: rates[10]!,
  });
  report.add({
    suite: "apply",
    name: "new TCP connections/s through the ClusterIPs, 10k services loaded",
    unit: "conn/s",
    values: rates[10000]!,
  });
  report.add({
    suite: "apply",
    name: "connection rate 10k services / 10 services",
    unit: "x",
    values: rates[10000]!.map((v, i) => v / rates[10]![i]!),
    target: { min: 0.9, source: "issue 3" },
    note: `medians ${median(rates[10000]!).toFixed(0)} vs ${median(rates[10]!).toFixed(0)} conn/s`,
  });
}
