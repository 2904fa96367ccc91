/** Runs plan_cost_probe.ts in a fresh process per measurement (see there for what it measures). */
import { BenchCommandError, run } from "./_compare_exec.ts";
import type { PlanCost } from "./plan_cost_probe.ts";
import { V8_FLAGS } from "../deploy/permissions.ts";

export type { PlanCost };

const PROBE = decodeURIComponent(new URL("./plan_cost_probe.ts", import.meta.url).pathname);
const CONFIG = decodeURIComponent(new URL("../deno.json", import.meta.url).pathname);

/** Planning cost of `n` services, in a new process run as `deno task kpx` runs kpx. */
export async function planCost(
  n: number,
  repeats: { full: number; delta: number },
): Promise<PlanCost> {
  const argv = [
    Deno.execPath(),
    "run",
    "--allow-all",
    `--config=${CONFIG}`,
    // kpx's shipped V8 flags.
    `--v8-flags=${V8_FLAGS}`,
    PROBE,
    String(n),
    String(repeats.full),
    String(repeats.delta),
  ];
  const r = await run(argv);
  if (r.code !== 0) {
    throw new BenchCommandError(`measure planning of ${n} services`, argv, r.code, r.stderr);
  }
  return JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!) as PlanCost;
}
