/**
 * Side-by-side benchmark (issue 7): kpx against kube-proxy's nftables and
 * iptables (iptables-nft, iptables-legacy) rule layouts, on this machine in
 * one run: full sync, one-service change, connection rate and connect
 * latency, at 10 services and 1k/5k/10k/30k services x 10 endpoints, plus
 * kpx's planning CPU and memory. Writes docs/performance.md (with SVG plots
 * and the raw figures in docs/performance.json) and adds the headline
 * figures and targets to the bench report.
 *
 * Full run: ~30-40 min on the 2-core benchmark machine (kube-proxy's
 * nftables layout alone takes minutes to load at 30k services); --quick
 * (10, 1k, 10k services, one run): ~5 min.
 *
 * In bench/main.ts SUITES: `compare: compareBench,`
 * Alone: deno run -A bench/compare_bench.ts [--quick]
 * Re-render the report from saved figures: ... compare_bench.ts --render=docs/performance.json
 * Kernel work only inside namespaces it creates (see dataplane_topology.ts).
 */
import { Planner } from "../src/planner/mod.ts";
import { BenchReport } from "./report.ts";
import type { CompareResults, CompareSettings } from "./compare_results.ts";
import { median, samplesOf } from "./compare_results.ts";
import { runComparison } from "./compare_run.ts";
import { LAYOUT_LABELS, LAYOUTS } from "./compare_layouts.ts";
import {
  evaluateTargets,
  performanceMarkdown,
  performancePlots,
  sizeLabel,
} from "./compare_report.ts";

const DATAPLANE = { port: 80, timeoutMs: 1000, latencyProbes: 300 } as const;

export function compareSettings(quick: boolean): CompareSettings {
  return quick
    ? {
      mode: "quick",
      sizes: [10, 1000, 10000],
      endpoints: 10,
      runs: 1,
      changes: 5,
      maxLoadSeconds: 150,
      repeatLoadSeconds: 150,
      dataplane: { ...DATAPLANE, warmupMs: 300, durationMs: 2000, concurrency: 64 },
    }
    : {
      mode: "full",
      sizes: [10, 1000, 5000, 10000, 30000],
      endpoints: 10,
      runs: 3,
      changes: 10,
      maxLoadSeconds: 600,
      repeatLoadSeconds: 120,
      dataplane: { ...DATAPLANE, warmupMs: 500, durationMs: 3000, concurrency: 64 },
    };
}

/** The headline figures and the targets, in the common bench report. */
function addFigures(report: BenchReport, results: CompareResults): void {
  for (const size of results.settings.sizes) {
    for (const layout of LAYOUTS) {
      const label = `${LAYOUT_LABELS[layout]}, ${sizeLabel(size)} services`;
      const full = samplesOf(results.fullSyncMs, layout, size);
      if (full.length) {
        report.add({
          suite: "compare",
          name: `full sync, ${label}`,
          unit: "s",
          values: full.map((v) => v / 1000),
        });
      }
      const change = samplesOf(results.changeApplyMs, layout, size);
      if (change.length) {
        report.add({
          suite: "compare",
          name: `one-service change, ${label}`,
          unit: "ms",
          values: change,
          ...(layout === "kpx" ? { target: { max: 20, source: "issue 7" } } : {}),
        });
      }
      const rate = samplesOf(results.rate, layout, size);
      if (rate.length) {
        report.add({
          suite: "compare",
          name: `new connections/s, ${label}`,
          unit: "conn/s",
          values: rate,
        });
      }
    }
  }
  for (const t of evaluateTargets(results)) {
    if (!Number.isFinite(t.value)) continue;
    report.add({
      suite: "compare",
      name: t.target,
      unit: t.limit.max === 20 ? "ms" : "x",
      values: [t.value],
      target: { ...t.limit, source: "issue 7" },
      note: t.measured,
    });
  }
}

/** Findings that need more than the tables: kpx's planning memory. */
function planningNotes(results: CompareResults): string[] {
  const notes: string[] = [];
  for (const c of results.planCost) {
    const one = c.rssFirstFullMB - c.rssBeforeMB;
    const all = c.rssPeakMB - c.rssBeforeMB;
    // Each call instantiates the module afresh; if earlier instances' memories
    // are not collected before the next call, peaks add up.
    if (all > 1.5 * one && all - one > 50) {
      notes.push(
        `kpx planning memory with ${
          sizeLabel(c.services)
        } services: one full plan raises the peak RSS by ${
          one.toFixed(0)
        } MB, three full plans and 20 deltas in a row by ${
          all.toFixed(0)
        } MB. Each call instantiates the planner module afresh, and an earlier instance's memory is freed only when V8 next collects it, so calls in a row add up their peaks.`,
      );
    }
    const worstDelta = Math.max(...c.deltaCpuMs);
    if (worstDelta > 10 * median(c.deltaCpuMs) && worstDelta > 5) {
      notes.push(
        `kpx one-service delta with ${sizeLabel(c.services)} services: median ${
          median(c.deltaCpuMs).toFixed(2)
        } ms CPU, worst ${worstDelta.toFixed(1)} ms (a garbage collection during the call).`,
      );
    }
  }
  return notes;
}

/** Writes docs/performance.md, its SVG plots and docs/performance.json. */
async function writeDocs(results: CompareResults): Promise<void> {
  const docs = decodeURIComponent(new URL("../docs/", import.meta.url).pathname);
  await Deno.mkdir(docs, { recursive: true });
  for (const [file, svg] of Object.entries(performancePlots(results))) {
    await Deno.writeTextFile(`${docs}${file}`, svg);
  }
  await Deno.writeTextFile(`${docs}performance.json`, JSON.stringify(results, null, 1) + "\n");
  await Deno.writeTextFile(
    `${docs}performance.md`,
    performanceMarkdown(results, planningNotes(results)),
  );
  console.log(`wrote ${docs}performance.md`);
}

export async function compareBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const results = await runComparison(await Planner.load(), compareSettings(opts.quick));
  addFigures(report, results);
  await writeDocs(results);
}

if (import.meta.main) {
  // --render=FILE: rewrite the report from a saved docs/performance.json, measuring nothing.
  const render = Deno.args.find((a) => a.startsWith("--render="));
  if (render) {
    await writeDocs(JSON.parse(await Deno.readTextFile(render.slice(9))) as CompareResults);
  } else {
    await compareBench(new BenchReport(), { quick: Deno.args.includes("--quick") });
  }
}
