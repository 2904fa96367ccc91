/**
 * Apply benchmarks (issue 3): nft time of a full sync at 1k/10k services x 10
 * endpoints (fresh, and over an existing table as a periodic resync does),
 * a one-service delta on a 10k-service ruleset (target < 20 ms including the
 * nft process), and new TCP connections per second through a ClusterIP with
 * 10 vs 10k services loaded (target: within 10%, O(1) dispatch).
 */
import { NftCli, ProcessRunner } from "../src/apply/mod.ts";
import { EMPTY_INVENTORY, nextInventory, Planner } from "../src/planner/mod.ts";
import type { Service } from "../src/state/mod.ts";
import { Testbed } from "../test/e2e/mod.ts";
import { BENCH_CONTEXT } from "./plan_bench.ts";
import { type BenchReport, median } from "./report.ts";
import { syntheticService, syntheticServices } from "./synthetic.ts";
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

  // Connection rate through a ClusterIP with 10 vs 10k services loaded.
  const rates: Record<number, number[]> = { 10: [], 10000: [] };
  await using tb = await Testbed.create({ nodes: 1, podsPerNode: 3, echoPorts: [8080] });
  const [client, b1, b2] = tb.pods;
  const node = tb.node(0);
  const target: Service = {
    ...syntheticService(0, 0),
    id: "bench/target",
    name: "target",
    clusterIPs: ["10.95.0.1"],
    ports: [{
      name: "http",
      protocol: "TCP",
      port: 80,
      nodePort: 0,
      endpoints: [b1!, b2!].map((p) => ({
        address: p.ipv4,
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        nodeName: node.name,
        zoneHints: [],
        nodeHints: [],
      })),
    }],
  };
  const conns = opts.quick ? 1000 : 2000;
  for (let round = 0; round < (opts.quick ? 3 : 6); round++) {
    for (const n of [10, 10000]) {
      const batch = planner.planFull(
        [target, ...syntheticServices(n, 10)],
        { ...BENCH_CONTEXT, nodeName: node.name },
        EMPTY_INVENTORY,
        1,
      ).batch;
      await tb.exec(node, ["nft", "delete", "table", "inet", "kpx"]).catch(() => {});
      await tb.nft(node, new TextDecoder().decode(batch));
      // Let the kernel finish with the replaced table (it frees the old one
      // after an RCU grace period), then warm up the path.
      await new Promise((r) => setTimeout(r, 1000));
      await tb.requestMany(
        client!,
        Array.from(
          { length: 200 },
          () => ({ ip: "10.95.0.1", port: 80, protocol: "tcp" as const, timeoutMs: 2000 }),
        ),
        { concurrency: 64 },
      );
      await tb.exec(node, ["conntrack", "-F"]);
      // Process start-up is measured once and subtracted.
      const t0 = performance.now();
      await tb.requestMany(client!, [{
        ip: "10.95.0.1",
        port: 80,
        protocol: "tcp",
        timeoutMs: 2000,
      }]);
      const startup = performance.now() - t0;
      const t = performance.now();
      const res = await tb.requestMany(
        client!,
        Array.from(
          { length: conns },
          () => ({ ip: "10.95.0.1", port: 80, protocol: "tcp" as const, timeoutMs: 2000 }),
        ),
        { concurrency: 64 },
      );
      const secs = (performance.now() - t - startup) / 1000;
      const ok = res.filter((r) => r.ok).length;
      if (ok < conns * 0.99) {
        throw new Error(
          `Cannot measure the connection rate: only ${ok}/${conns} connections succeeded with ${n} services`,
        );
      }
      rates[n]!.push(ok / secs);
    }
  }
  report.add({
    suite: "apply",
    name: "new TCP connections/s through a ClusterIP, 10 services loaded",
    unit: "conn/s",
    values: rates[10]!,
  });
  report.add({
    suite: "apply",
    name: "new TCP connections/s through a ClusterIP, 10k services loaded",
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
