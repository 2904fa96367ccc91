/**
 * docs/performance.md from a CompareResults: the machine and versions, the
 * targets with verdicts, one table per measure with kpx/reference ratios,
 * SVG plots against the number of services, kpx's planning cost, findings
 * computed from the figures, and how everything was measured.
 */
import { LAYOUT_LABELS, type LayoutName, LAYOUTS } from "./compare_layouts.ts";
import { type CompareResults, median, type Samples, samplesOf } from "./compare_results.ts";
import { linePlot, type Series } from "./svg_plot.ts";

const REFERENCES = LAYOUTS.filter((l) => l !== "kpx");
const COLORS: Record<LayoutName, string> = {
  "kpx": "#1b7837",
  "kube-nftables": "#2166ac",
  "iptables-nft": "#d6604d",
  "iptables-legacy": "#984ea3",
};
const SHORT: Record<LayoutName, string> = {
  "kpx": "kpx",
  "kube-nftables": "kube nft",
  "iptables-nft": "ipt-nft",
  "iptables-legacy": "ipt-legacy",
};

/** 3 significant digits, no exponent. */
export function num(v: number): string {
  if (!Number.isFinite(v)) return "–";
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  return String(+v.toPrecision(3));
}

export function sizeLabel(n: number): string {
  return n >= 1000 ? `${n / 1000}k` : String(n);
}

/** "1.23 (1.1–1.4, n=3)" in the unit `scale` converts to. */
function cell(values: readonly number[], scale = 1): string {
  if (values.length === 0) return "–";
  const v = values.map((x) => x * scale);
  if (v.length === 1) return `${num(v[0]!)} (n=1)`;
  return `${num(median(v))} (${num(Math.min(...v))}–${num(Math.max(...v))}, n=${v.length})`;
}

function ratio(a: readonly number[], b: readonly number[]): number {
  return median(a) / median(b);
}

function ratioCell(a: readonly number[], b: readonly number[]): string {
  const r = ratio(a, b);
  return Number.isFinite(r) ? `${num(r)}×` : "–";
}

/** A table: one row per size, one column per layout, then kpx/reference ratios. */
function table(
  results: CompareResults,
  samples: Samples,
  scale: number,
  opts: { skipped?: boolean; zeroIsNone?: boolean } = {},
): string[] {
  const header = [
    "services",
    ...LAYOUTS.map((l) => LAYOUT_LABELS[l]),
    ...REFERENCES.map((r) => `kpx / ${SHORT[r]}`),
  ];
  const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`];
  for (const size of results.settings.sizes) {
    const row = [sizeLabel(size)];
    for (const l of LAYOUTS) {
      const v = samplesOf(samples, l, size);
      const why = opts.skipped ? results.fullSyncSkipped[l]?.[size] : undefined;
      const none = opts.zeroIsNone && v.length > 0 && v.every((x) => x === 0);
      row.push(none ? "none" : v.length ? cell(v, scale) : why ? `not timed¹` : "–");
    }
    for (const r of REFERENCES) {
      const ref = samplesOf(samples, r, size);
      const none = opts.zeroIsNone && ref.every((x) => x === 0);
      row.push(none ? "–" : ratioCell(samplesOf(samples, "kpx", size), ref));
    }
    lines.push(`| ${row.join(" | ")} |`);
  }
  return lines;
}

function series(results: CompareResults, samples: Samples, scale: number): Series[] {
  return LAYOUTS.map((l) => ({
    name: LAYOUT_LABELS[l],
    color: COLORS[l],
    points: results.settings.sizes
      .map((n) => [n, median(samplesOf(samples, l, n)) * scale] as const)
      .filter(([, v]) => Number.isFinite(v)),
  }));
}

/** The SVG files the report links to, by file name. */
export function performancePlots(results: CompareResults): Record<string, string> {
  return {
    "performance-sync.svg": linePlot({
      title: "Full sync: time to load the whole ruleset",
      xLabel: "services (x 10 endpoints)",
      yLabel: "seconds (log scale)",
      xLog: true,
      yLog: true,
      series: series(results, results.fullSyncMs, 1 / 1000),
    }),
    "performance-change.svg": linePlot({
      title: "One-service change: the applying transaction",
      xLabel: "services (x 10 endpoints)",
      yLabel: "milliseconds (log scale)",
      xLog: true,
      yLog: true,
      series: series(results, results.changeApplyMs, 1),
    }),
    "performance-rate.svg": linePlot({
      title: "New TCP connections per second through the node",
      xLabel: "services loaded (x 10 endpoints)",
      yLabel: "connections per second",
      xLog: true,
      series: series(results, results.rate, 1),
    }),
  };
}

/** A target: what it asks, what was measured, and whether it was met. */
export interface TargetResult {
  target: string;
  measured: string;
  verdict: "met" | "missed" | "not measured";
  /** The ratio or figure compared with the limit. */
  value: number;
  limit: { min?: number; max?: number };
}

function verdictOf(value: number, limit: { min?: number; max?: number }): TargetResult["verdict"] {
  if (!Number.isFinite(value)) return "not measured";
  if (limit.min !== undefined && value < limit.min) return "missed";
  if (limit.max !== undefined && value > limit.max) return "missed";
  return "met";
}

/** The issue's targets, evaluated (at the largest size measured when 10k/30k are absent). */
export function evaluateTargets(results: CompareResults): TargetResult[] {
  const sizes = results.settings.sizes;
  const big = sizes.includes(30000) ? 30000 : sizes.at(-1)!;
  const small = sizes[0]!;
  const s10k = sizes.includes(10000) ? 10000 : sizes.at(-1)!;
  const out: TargetResult[] = [];
  const kpxFull = samplesOf(results.fullSyncMs, "kpx", s10k);
  const refFull = samplesOf(results.fullSyncMs, "kube-nftables", s10k);
  const speedup = ratio(refFull, kpxFull);
  out.push({
    target: `full sync of ${
      sizeLabel(s10k)
    } services at least 10× faster than kube-proxy's nftables layout`,
    measured: `kpx ${num(median(kpxFull) / 1000)} s, kube-proxy nftables ${
      num(median(refFull) / 1000)
    } s: ${num(speedup)}× faster`,
    verdict: verdictOf(speedup, { min: 10 }),
    value: speedup,
    limit: { min: 10 },
  });
  const worst = Math.max(...sizes.map((n) => median(samplesOf(results.changeApplyMs, "kpx", n))));
  out.push({
    target: "one-service change under 20 ms at any scale (kpx's nft -j -f, process included)",
    measured: sizes.map((n) =>
      `${sizeLabel(n)}: ${num(median(samplesOf(results.changeApplyMs, "kpx", n)))} ms`
    ).join(", "),
    verdict: verdictOf(worst, { max: 20 }),
    value: worst,
    limit: { max: 20 },
  });
  const rateBig = samplesOf(results.rate, "kpx", big);
  const rateSmall = samplesOf(results.rate, "kpx", small);
  const keep = ratio(rateBig, rateSmall);
  out.push({
    target: `connection rate with ${sizeLabel(big)} services within 10% of ${small} services (kpx)`,
    measured: `${num(median(rateBig))} vs ${num(median(rateSmall))} conn/s: ${num(keep)}×`,
    verdict: verdictOf(keep, { min: 0.9 }),
    value: keep,
    limit: { min: 0.9 },
  });
  const refRate = samplesOf(results.rate, "kube-nftables", big);
  const vsRef = ratio(rateBig, refRate);
  out.push({
    target: `connection rate with ${sizeLabel(big)} services at least kube-proxy nftables'`,
    measured: `kpx ${num(median(rateBig))}, kube-proxy nftables ${num(median(refRate))} conn/s: ${
      num(vsRef)
    }×`,
    verdict: verdictOf(vsRef, { min: 1 }),
    value: vsRef,
    limit: { min: 1 },
  });
  return out;
}

/**
 * Where kpx is not ahead, computed from the figures. Differences too small to
 * matter are left out: under 20 ms for a full sync, 2 ms for a change, 5% for
 * a rate (this machine's run-to-run noise).
 */
function findings(results: CompareResults): string[] {
  const out: string[] = [];
  const m = (samples: Samples, l: LayoutName, n: number) => median(samplesOf(samples, l, n));
  for (const n of results.settings.sizes) {
    for (const r of REFERENCES) {
      const [kFull, rFull] = [m(results.fullSyncMs, "kpx", n), m(results.fullSyncMs, r, n)];
      if (kFull > rFull && kFull - rFull >= 20) {
        out.push(
          `full sync of ${sizeLabel(n)} services: kpx takes ${num(kFull / rFull)}× the time of ${
            LAYOUT_LABELS[r]
          } (${num(kFull / 1000)} vs ${num(rFull / 1000)} s).`,
        );
      }
      const [kChange, rChange] = [
        m(results.changeApplyMs, "kpx", n),
        m(results.changeApplyMs, r, n),
      ];
      if (kChange > rChange && kChange - rChange >= 2) {
        out.push(
          `one-service change with ${sizeLabel(n)} services: kpx's transaction takes ${
            num(kChange / rChange)
          }× the time of ${LAYOUT_LABELS[r]}'s (${num(kChange)} vs ${
            num(rChange)
          } ms). See "kpx's change taken apart": kpx's time is ~3 ms of starting nft and, for most of the rest, the kernel committing the removal of set elements, whatever the table's size.`,
        );
      }
      const [kRate, rRate] = [m(results.rate, "kpx", n), m(results.rate, r, n)];
      if (kRate < 0.95 * rRate) {
        out.push(
          `connection rate with ${sizeLabel(n)} services: kpx reaches ${
            num(kRate / rRate)
          }× the rate of ${LAYOUT_LABELS[r]} (${num(kRate)} vs ${num(rRate)} conn/s).`,
        );
      }
    }
  }
  return out;
}

function planCostTable(results: CompareResults): string[] {
  const lines = [
    "| services | full plan, wall ms | full plan, CPU ms | one-service delta, CPU ms (median / max of 20) | peak RSS: services built → one full plan → 3 full plans + 20 deltas (MB) |",
    "|---|---|---|---|---|",
  ];
  for (const c of results.planCost) {
    lines.push(
      `| ${sizeLabel(c.services)} | ${cell(c.fullWallMs)} | ${cell(c.fullCpuMs)} | ${
        num(median(c.deltaCpuMs))
      } / ${num(Math.max(...c.deltaCpuMs))} | ${num(c.rssBeforeMB)} → ${num(c.rssFirstFullMB)} → ${
        num(c.rssPeakMB)
      } |`,
    );
  }
  return lines;
}

function anatomyTable(results: CompareResults): string[] {
  const lines = [
    "| services | one-service change (whole batch) | empty batch (process start-up) | one element added | that element removed | generation marker (flush + add) |",
    "|---|---|---|---|---|---|",
  ];
  for (const size of results.settings.sizes) {
    const a = results.kpxDeltaAnatomy[size];
    if (!a) continue;
    lines.push(
      `| ${sizeLabel(size)} | ${cell(samplesOf(results.changeApplyMs, "kpx", size))} | ${
        cell(a.empty)
      } | ${cell(a.addElement)} | ${cell(a.removeElement)} | ${cell(a.marker)} |`,
    );
  }
  return lines;
}

function duration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  return m > 0 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.round(seconds)} s`;
}

/** The whole of docs/performance.md. `notes` are extra lines for the Findings section. */
export function performanceMarkdown(
  results: CompareResults,
  notes: readonly string[] = [],
): string {
  const s = results.settings;
  const m = results.machine;
  const skipped = LAYOUTS.flatMap((l) =>
    Object.entries(results.fullSyncSkipped[l] ?? {}).map(([n, why]) =>
      `${LAYOUT_LABELS[l]}, ${sizeLabel(Number(n))} services: ${why}`
    )
  );
  const targets = evaluateTargets(results);
  const found = [...findings(results), ...notes];
  return [
    "# kpx against kube-proxy's rule layouts",
    "",
    `Generated by \`deno task bench\` (suite \`compare\`, ${s.mode} mode${
      s.mode === "quick"
        ? ": fewer sizes and runs; `deno task bench --only=compare` for the full run"
        : ""
    }). This run took ${
      duration(results.durationSeconds)
    }. Each cell is the median of its samples, with min–max and the number of samples; ratios are kpx/reference of the medians (for times, below 1× means kpx is faster; for rates, above 1× means kpx is faster).`,
    "",
    "## Machine",
    "",
    `- ${m.cores} × ${m.cpu}, ${m.memoryGiB} GiB; kernel ${m.kernel}; Deno ${m.deno}`,
    `- ${m.nft}; ${m.iptablesNft}; ${m.iptablesLegacy}`,
    "- A shared machine: other engineers' tests may run at the same time, so figures are medians of interleaved runs (every layout measured in turn within each run).",
    "",
    "## Targets",
    "",
    "| target | measured | verdict |",
    "|---|---|---|",
    ...targets.map((t) => `| ${t.target} | ${t.measured} | **${t.verdict}** |`),
    "",
    "## What is compared",
    "",
    `Every ruleset programs the same ${s.endpoints}-endpoint ClusterIP services (every 10th also a NodePort) from \`bench/synthetic.ts\`, loaded into a fresh network namespace:`,
    "",
    "- **kpx**: the planner's full batch through `nft -j -f -` (one transaction); a one-service change is the planner's delta batch.",
    "- **kube-proxy nftables**: `bench/reference/kube_nftables.ts`, the transaction kube-proxy's nftables mode sends to `nft -f -` (v1.31/v1.32 layout: kubernetes/kubernetes commit b0f823e6, `pkg/proxy/nftables/proxier.go`): per-service and per-endpoint chains, `numgen` verdict maps, the service-ips/service-nodeports maps, masquerade marking.",
    "- **kube-proxy iptables**: `bench/reference/kube_iptables.ts`, the `iptables-restore --noflush --counters` input of kube-proxy's iptables mode (same commit, `pkg/proxy/iptables/proxier.go`): KUBE-SERVICES / KUBE-SVC-* / KUBE-SEP-* with `statistic` probabilities, KUBE-MARK-MASQ, KUBE-NODEPORTS; loaded with Debian's `iptables-nft-restore` and `iptables-legacy-restore`.",
    "",
    "## Full sync",
    "",
    "Time to load the whole ruleset into an empty namespace, seconds (process start-up included).",
    "",
    ...table(results, results.fullSyncMs, 1 / 1000, { skipped: true }),
    "",
    ...(skipped.length ? skipped.map((x, i) => `${i === 0 ? "¹ " : "  "}${x}.`).concat([""]) : []),
    "![full sync time against services](performance-sync.svg)",
    "",
    "## One-service change",
    "",
    "Two of one service's ten endpoints replaced (a rolling update step), on a loaded ruleset. The transaction that changes the kernel, milliseconds (process start-up included):",
    "",
    ...table(results, results.changeApplyMs, 1),
    "",
    "What each proxy also runs on every sync, milliseconds: kpx reads back its chain list and generation marker (`nft -j list chains inet`, `list set`) to verify; kube-proxy's nftables mode lists all chains and sets of the family (`nft --json list chains ip`, `list sets ip`) to find stale ones; kube-proxy's iptables mode runs nothing more in large-cluster mode.",
    "",
    ...table(results, results.changeReadsMs, 1, { zeroIsNone: true }),
    "",
    "kube-proxy's iptables mode is measured with its partial sync (`--noflush`, the default since v1.27): the filter table and the shared nat chains (KUBE-SERVICES with one rule per service, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ) are rewritten whole and, of the per-service chains, only the changed service's. That is what kube-proxy does on an endpoint change; a full restore of the whole table (what it does on start-up and after a failure) costs the full-sync time above. kube-proxy's nftables mode rewrites the changed service's chains and skips unchanged map elements; the endpoint chains it no longer uses are flushed now and deleted by a later sync, which is not timed.",
    "",
    "![one-service change time against services](performance-change.svg)",
    "",
    "kpx's change taken apart, milliseconds: each piece applied alone with `nft -j -f` on the same loaded table. Compare the element added with the element removed: the difference is what the kernel takes to commit a removal (a flushed non-empty set is one). Every kpx batch removes at least the previous generation marker, and an endpoint change removes the old endpoints' elements anyway, so the marker adds no second such cost.",
    "",
    ...anatomyTable(results),
    "",
    "## Data plane",
    "",
    `From a pod namespace through the node namespace to a backend namespace, new TCP connections to the ClusterIPs of services picked at random among all loaded, each reset as soon as it is established. Rate: ${s.dataplane.concurrency} connects in flight for ${
      s.dataplane.durationMs / 1000
    } s after ${
      s.dataplane.warmupMs / 1000
    } s of warm-up, connections per second. Latency: ${s.dataplane.latencyProbes} connects one at a time, the median connect time (SYN out to SYN-ACK back through the node's rules), microseconds.`,
    "",
    "Connections per second:",
    "",
    ...table(results, results.rate, 1),
    "",
    "Connect latency, median of each sample's sequential connects, µs:",
    "",
    ...table(results, results.latencyP50Us, 1),
    "",
    "Connect latency, 99th percentile, µs:",
    "",
    ...table(results, results.latencyP99Us, 1),
    "",
    "![connection rate against services](performance-rate.svg)",
    "",
    "## kpx's planning cost",
    "",
    "In a process of its own (run as `deno task kpx` runs kpx, with a 1 MB young generation); CPU is the main thread's, where the WebAssembly planner runs (a fresh instance per call).",
    "",
    ...planCostTable(results),
    "",
    "## Findings",
    "",
    ...(found.length
      ? found.map((f) => `- ${f}`)
      : ["- kpx is ahead of every reference on every measure."]),
    "",
    "## Method",
    "",
    `- Sizes: ${
      s.sizes.map(sizeLabel).join(", ")
    } services × ${s.endpoints} endpoints; ${s.runs} run(s) per size, the layouts interleaved within each run; ${s.changes} one-service changes per loaded ruleset. Loads predicted to take over ${s.repeatLoadSeconds} s are timed once per size (the data plane is then measured ${s.runs} time(s) on that load); over ${s.maxLoadSeconds} s, not timed: the same rules are then loaded with several smaller iptables-restore runs (\`kubeIptablesChunks()\`, not something kube-proxy does) so the data plane and the change can still be measured.`,
    '- Each layout gets a fresh node namespace, joined by veth to a client ("pod", inside the cluster CIDR, so not masqueraded) and to a backend namespace where every endpoint address is local (an AnyIP route) and one listener accepts and closes connections. Nothing is linked to the root namespace.',
    "- The node's conntrack table is flushed before each data-plane sample; its TCP close/time-wait timeouts are 1 s, and the client resets each connection (SO_LINGER 0), so neither conntrack nor client ports run out.",
    "- Load generator and listener are Deno programs calling libc through FFI (`bench/dataplane_client.ts`, `bench/dataplane_sink.ts`). On this 2-core machine they and the kernel share the CPUs, so an O(1) ruleset's rate is bounded by them: its figure is a floor, and the differences between layouts that evaluate many rules per new connection are what the table shows.",
    "- kube-proxy's own processing (Go, building the transaction) is not measured: the reference times are only what the kernel tools take to apply its output. kpx's planning is measured separately above.",
    "",
  ].join("\n");
}
