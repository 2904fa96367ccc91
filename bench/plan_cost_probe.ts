/**
 * Measures kpx's planning cost in a process of its own, so peak memory is
 * this work's and nothing else's: builds N synthetic services x 10 endpoints,
 * then plans them in full and plans a one-service delta, printing one JSON
 * line of PlanCost. CPU time is the main thread's (clock_gettime of
 * CLOCK_THREAD_CPUTIME_ID), where the WebAssembly planner runs; /proc's
 * counters only advance at scheduler ticks, too coarse for a 1 ms delta.
 *
 *   deno run -A --v8-flags=--max-semi-space-size=1,--optimize-for-size bench/plan_cost_probe.ts 10000
 * @module
 */
import { EMPTY_INVENTORY, nextInventory, Planner } from "../src/planner/mod.ts";
import { BENCH_CONTEXT } from "./plan_bench.ts";
import { syntheticService, syntheticServices } from "./synthetic.ts";

export interface PlanCost {
  services: number;
  /** One value per repetition (the first includes V8 tiering up the module). */
  fullWallMs: number[];
  fullCpuMs: number[];
  deltaWallMs: number[];
  deltaCpuMs: number[];
  /** Peak resident set (VmHWM), MB: services built; after the first full plan; at the end. */
  rssBeforeMB: number;
  rssFirstFullMB: number;
  rssPeakMB: number;
  /** Deno.memoryUsage() right after the full plan, MB. */
  heapUsedMB: number;
  externalMB: number;
}

const CLOCK_THREAD_CPUTIME_ID = 3;
const clock = Deno.dlopen("libc.so.6", {
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
}).symbols;
const timespec = new BigInt64Array(2);

function threadCpuMs(): number {
  if (clock.clock_gettime(CLOCK_THREAD_CPUTIME_ID, timespec) !== 0) {
    throw new Error("Cannot read the thread's CPU time: clock_gettime failed");
  }
  return Number(timespec[0]!) * 1e3 + Number(timespec[1]!) / 1e6;
}

function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  if (!m) throw new Error("Cannot read VmHWM from /proc/self/status");
  return Number(m[1]) / 1024;
}

/** Wall and CPU milliseconds of fn(). */
function timed<T>(fn: () => T): { value: T; wall: number; cpu: number } {
  const cpu = threadCpuMs();
  const wall = performance.now();
  const value = fn();
  return { value, wall: performance.now() - wall, cpu: threadCpuMs() - cpu };
}

export async function measurePlanCost(
  n: number,
  repeats: { full: number; delta: number },
): Promise<PlanCost> {
  const services = syntheticServices(n, 10);
  const planner = await Planner.load();
  const rssBeforeMB = peakRssMB();
  const cost: PlanCost = {
    services: n,
    fullWallMs: [],
    fullCpuMs: [],
    deltaWallMs: [],
    deltaCpuMs: [],
    rssBeforeMB,
    rssFirstFullMB: 0,
    rssPeakMB: 0,
    heapUsedMB: 0,
    externalMB: 0,
  };
  let full = timed(() => planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1));
  cost.rssFirstFullMB = peakRssMB();
  const mem = Deno.memoryUsage();
  cost.heapUsedMB = mem.heapUsed / 2 ** 20;
  cost.externalMB = mem.external / 2 ** 20;
  for (let r = 0;; r++) {
    cost.fullWallMs.push(full.wall);
    cost.fullCpuMs.push(full.cpu);
    if (r + 1 >= repeats.full) break;
    full = timed(() => planner.planFull(services, BENCH_CONTEXT, EMPTY_INVENTORY, 1));
  }
  let inventory = nextInventory(EMPTY_INVENTORY, full.value, planner.layoutVersion);
  let current = services[7]!;
  for (let v = 1; v <= repeats.delta; v++) {
    // Replace 2 of the 10 endpoints, as a rolling update does.
    const next = syntheticService(7, 10, false, 2 * v);
    const delta = timed(() =>
      planner.planDelta([{ old: current, now: next }], BENCH_CONTEXT, inventory, 1 + v)
    );
    cost.deltaWallMs.push(delta.wall);
    cost.deltaCpuMs.push(delta.cpu);
    inventory = nextInventory(inventory, delta.value, planner.layoutVersion);
    current = next;
  }
  cost.rssPeakMB = peakRssMB();
  return cost;
}

if (import.meta.main) {
  const n = Number(Deno.args[0]);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(
      `Cannot measure planning: services must be a positive integer, got ${Deno.args[0]}`,
    );
  }
  const full = Number(Deno.args[1] ?? "3");
  const delta = Number(Deno.args[2] ?? "20");
  console.log(JSON.stringify(await measurePlanCost(n, { full, delta })));
}
