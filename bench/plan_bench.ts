/**
 * Planner benchmarks (issue 2): full plan and one-service delta at 1k/10k/30k
 * services x 10 endpoints, batch sizes, and the time to load the 10k full
 * batch with nft against an element-only ruleset of the same endpoints.
 */
import { EMPTY_INVENTORY, type PlanContext, Planner } from "../src/planner/mod.ts";
import { type BenchReport, median, timeRuns } from "./report.ts";
import { syntheticService, syntheticServices } from "./synthetic.ts";
import { loadInThrowawayNamespace } from "./netns.ts";

export const BENCH_CONTEXT: PlanContext = {
  nodeName: "node-a",
  nodeZone: "",
  masqueradeBit: 14,
  masqueradeAll: false,
  dropInvalid: true,
  localDetection: { mode: "CIDR", cidrs: ["10.64.0.0/10"] },
  nodePortAddresses: null,
  serviceCIDRs: ["10.96.0.0/12"],
};

/** The DESIGN's measuring stick: endpoints only, as elements of one map (nft text syntax). */
export function elementOnlyReference(services: number, endpoints: number): string {
  const lines = [
    "table inet kpxref {",
    "  map ep4 {",
    `    typeof ip daddr . th dport . numgen random mod ${endpoints} : ip daddr . th dport`,
    "    elements = {",
  ];
  const els: string[] = [];
  for (const s of syntheticServices(services, endpoints, { nodePortEvery: 0 })) {
    s.ports[0]!.endpoints.forEach((e, i) =>
      els.push(`      ${s.clusterIPs[0]} . 80 . ${i} : ${e.address} . ${e.port}`)
    );
  }
  lines.push(els.join(",\n"), "    }", "  }", "}");
  return lines.join("\n") + "\n";
}

export async function planBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const planner = await Planner.load();
  const runs = opts.quick ? 3 : 7;
  for (const n of opts.quick ? [1000, 10000] : [1000, 10000, 30000]) {
    const services = syntheticServices(n, 10);
    // Warm up: V8 tiers the module up after the first calls.
    planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1);
    let bytes = 0;
    const full = await timeRuns(runs, () => {
      bytes = planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1).batch.length;
    });
    report.add({
      suite: "planner",
      name: `full plan, ${n / 1000}k services x 10 endpoints`,
      unit: "ms",
      values: full,
      ...(n === 10000 ? { target: { max: 300, source: "issue 2" } } : {}),
    });
    report.add({
      suite: "planner",
      name: `full batch size, ${n / 1000}k services`,
      unit: "MB",
      values: [bytes / 1e6],
    });
    let version = 0;
    const delta = await timeRuns(runs * 20, () => {
      version++;
      planner.planDelta(
        [{ old: services[7]!, now: syntheticService(7, 10, false, version) }],
        BENCH_CONTEXT,
        { layout: planner.layoutVersion, chains: [], sets: [] },
        2,
      );
    });
    report.add({
      suite: "planner",
      name: `one-service delta, ${n / 1000}k services`,
      unit: "ms",
      values: delta,
      target: { max: 2, source: "issue 2" },
    });
  }

  // nft load of the 10k full batch vs the element-only reference.
  const batch =
    planner.planFull(syntheticServices(10000, 10), BENCH_CONTEXT, EMPTY_INVENTORY, 1).batch;
  const reference = elementOnlyReference(10000, 10);
  const loads: number[] = [];
  const refs: number[] = [];
  for (let i = 0; i < (opts.quick ? 2 : 5); i++) {
    loads.push(await loadInThrowawayNamespace(batch, "json"));
    refs.push(await loadInThrowawayNamespace(new TextEncoder().encode(reference), "text"));
  }
  report.add({
    suite: "planner",
    name: "nft -j -f of the 10k full batch",
    unit: "s",
    values: loads.map((v) => v / 1000),
  });
  report.add({
    suite: "planner",
    name: "nft -f of the element-only reference (10k x 10)",
    unit: "s",
    values: refs.map((v) => v / 1000),
  });
  report.add({
    suite: "planner",
    name: "10k full batch load / element-only reference",
    unit: "x",
    values: loads.map((v, i) => v / refs[i]!),
    target: { max: 2, source: "issue 2" },
    note: `reference median ${(median(refs) / 1000).toFixed(2)} s`,
  });
}
