/**
 * The comparison's measurement loop. For each number of services (ascending),
 * each run and each layout in turn (interleaved, so a busy moment on this
 * shared machine hits every layout alike), in a fresh node namespace:
 *   1. full sync: the whole ruleset in one load, timed;
 *   2. `changes` one-service changes (2 of the service's 10 endpoints
 *      replaced each time, as in a rolling update), each timed;
 *   3. the data plane: connection rate and connect latency through the rules;
 *   4. the ruleset flushed and the namespace deleted.
 * Full loads predicted to take longer than settings.repeatLoadSeconds are
 * done in the first run only (their data plane is then measured `runs`
 * times on that one load); longer than maxLoadSeconds, not timed at all
 * (the rules still go in, see LayoutSession.loadUntimed()).
 */
import type { Planner } from "../src/planner/mod.ts";
import type { Service } from "../src/state/mod.ts";
import { type LayoutName, LAYOUTS, openLayout } from "./compare_layouts.ts";
import { addSample, type CompareResults, type CompareSettings, median } from "./compare_results.ts";
import { machineInfo } from "./compare_machine.ts";
import { measureDataplane } from "./dataplane.ts";
import { DataplaneTopology, type NodeNs } from "./dataplane_topology.ts";
import { planCost } from "./plan_cost.ts";
import { syntheticService, syntheticServices } from "./synthetic.ts";
import { syntheticClusterIP } from "./_cluster_ips.ts";

/** The service changed by the one-service-change measurement (no node port). */
const CHANGED = 7;

/**
 * How full-load time grows with the number of services, for predictions:
 * iptables-nft-restore was measured growing ~n^2.4 here (1k: 4 s, 5k: 170 s);
 * the others are near-linear, 1.3 leaves a margin.
 */
const GROWTH: Record<LayoutName, number> = {
  "kpx": 1.3,
  "kube-nftables": 1.3,
  "iptables-nft": 2.5,
  "iptables-legacy": 1.3,
};

function log(message: string): void {
  console.error(`compare: ${message}`);
}

/** Predicted seconds of a full load of `size` services, from the largest size measured. */
function predictLoadSeconds(results: CompareResults, layout: LayoutName, size: number): number {
  const measured = Object.entries(results.fullSyncMs[layout] ?? {})
    .map(([n, v]) => [Number(n), median(v)] as const)
    .filter(([n, ms]) => n < size && Number.isFinite(ms) && n >= 100);
  const last = measured.at(-1);
  if (!last) return 0;
  return last[1] / 1000 * (size / last[0]) ** GROWTH[layout];
}

interface Step {
  layout: LayoutName;
  size: number;
  services: readonly Service[];
  /** Time the full load (else load untimed). */
  timeFull: boolean;
  /** Data-plane measurements on this load. */
  dataplaneRepeats: number;
}

async function measureOne(
  results: CompareResults,
  planner: Planner,
  topo: DataplaneTopology,
  step: Step,
): Promise<void> {
  const { layout, size, services } = step;
  const s = results.settings;
  const node: NodeNs = await topo.addNode();
  try {
    const session = openLayout(layout, planner, node, services);
    if (step.timeFull) {
      const ms = await session.fullSync();
      addSample(results.fullSyncMs, layout, size, ms);
      log(`${layout} ${size}: full sync ${(ms / 1000).toFixed(2)} s`);
    } else {
      await session.loadUntimed();
    }
    const current = services.slice();
    for (let k = 1; k <= s.changes; k++) {
      const now = syntheticService(CHANGED, s.endpoints, false, 2 * k);
      const old = current[CHANGED]!;
      current[CHANGED] = now;
      const t = await session.change(old, now, current);
      addSample(results.changeApplyMs, layout, size, t.apply);
      addSample(results.changeReadsMs, layout, size, t.reads);
    }
    if (session.anatomy) {
      const a = await session.anatomy();
      const into = results.kpxDeltaAnatomy[size] ??= {
        empty: [],
        addElement: [],
        removeElement: [],
        marker: [],
      };
      into.empty.push(a.empty);
      into.addElement.push(a.addElement);
      into.removeElement.push(a.removeElement);
      into.marker.push(a.marker);
    }
    for (let d = 0; d < step.dataplaneRepeats; d++) {
      const r = await measureDataplane(topo, node, { ...s.dataplane, services: size });
      const failed = Object.values(r.errors).reduce((a, b) => a + b, 0);
      if (r.connections === 0) {
        throw new Error(
          `Cannot measure the data plane of ${layout} with ${size} services: no connection succeeded (${
            JSON.stringify(r.errors)
          })`,
        );
      }
      addSample(results.rate, layout, size, r.rate);
      addSample(results.latencyP50Us, layout, size, r.latencyUs.p50);
      addSample(results.latencyP99Us, layout, size, r.latencyUs.p99);
      addSample(results.failedConnects, layout, size, failed);
      log(
        `${layout} ${size}: ${r.rate.toFixed(0)} conn/s, connect p50 ${
          r.latencyUs.p50.toFixed(0)
        } us${failed ? `, ${failed} failed` : ""}`,
      );
    }
    await session.flush();
  } finally {
    await topo.removeNode(node);
  }
}

/** Runs the whole comparison. */
export async function runComparison(
  planner: Planner,
  settings: CompareSettings,
): Promise<CompareResults> {
  const started = performance.now();
  const results: CompareResults = {
    settings,
    machine: await machineInfo(),
    fullSyncMs: {},
    fullSyncSkipped: {},
    changeApplyMs: {},
    changeReadsMs: {},
    rate: {},
    latencyP50Us: {},
    latencyP99Us: {},
    failedConnects: {},
    kpxDeltaAnatomy: {},
    planCost: [],
    durationSeconds: 0,
  };
  const topo = await DataplaneTopology.create();
  try {
    for (const size of settings.sizes) {
      const services = syntheticServices(size, settings.endpoints);
      // The load generator computes ClusterIPs itself: it must agree with synthetic.ts.
      if (services.some((svc, i) => svc.clusterIPs[0] !== syntheticClusterIP(i))) {
        throw new Error("Cannot run the comparison: _cluster_ips.ts disagrees with synthetic.ts");
      }
      const plan = new Map<LayoutName, { rounds: number; timeFull: boolean }>();
      for (const layout of LAYOUTS) {
        const predicted = predictLoadSeconds(results, layout, size);
        const timeFull = predicted <= settings.maxLoadSeconds;
        if (!timeFull) {
          (results.fullSyncSkipped[layout] ??= {})[size] =
            `not timed: one load predicted to take ~${
              predicted.toFixed(0)
            } s (limit ${settings.maxLoadSeconds} s)`;
        }
        const once = !timeFull || predicted > settings.repeatLoadSeconds;
        plan.set(layout, { rounds: once ? 1 : settings.runs, timeFull });
      }
      for (let run = 0; run < settings.runs; run++) {
        for (const layout of LAYOUTS) {
          const p = plan.get(layout)!;
          if (run >= p.rounds) continue;
          await measureOne(results, planner, topo, {
            layout,
            size,
            services,
            timeFull: p.timeFull,
            dataplaneRepeats: p.rounds === 1 ? settings.runs : 1,
          });
        }
      }
    }
  } finally {
    await topo.close();
  }
  for (const size of settings.sizes.filter((n) => n >= 1000)) {
    results.planCost.push(await planCost(size, { full: 3, delta: 20 }));
    log(`kpx planning ${size}: ${median(results.planCost.at(-1)!.fullCpuMs).toFixed(0)} ms CPU`);
  }
  results.durationSeconds = (performance.now() - started) / 1000;
  return results;
}
