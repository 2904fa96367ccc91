/** `kpx plan`: manifests in, nftables batch out. */
import type { Logger } from "../log/mod.ts";
import { isIPVSPlanOutput, renderBatch, renderIPVSPlan } from "../planner/mod.ts";
import { readManifests } from "../source/mod.ts";
import { planManifests } from "./planning.ts";
import { type FlagSpec, parseArgs, UsageError } from "./args.ts";
import { CONFIG_FLAG, hostname, loadConfigFromArgs } from "./common.ts";

export const PLAN_FLAGS: Record<string, FlagSpec> = {
  ...CONFIG_FLAG,
  output: {
    type: "string",
    short: "o",
    help: "json (the raw batch for nft -j -f) or text (default: readable)",
  },
};

export const PLAN_USAGE = "kpx plan [--config FILE] [flags] PATH...";

export async function planCommand(
  argv: string[],
  log: Logger,
  out: (s: string | Uint8Array) => Promise<void>,
): Promise<number> {
  const args = parseArgs(argv, PLAN_FLAGS);
  const output = (args.flags["output"] as string | undefined) ?? "text";
  if (output !== "json" && output !== "text") {
    throw new UsageError(
      `Cannot plan: --output must be json or text, got ${JSON.stringify(output)}`,
    );
  }
  if (args.positionals.length === 0) {
    throw new UsageError(`Cannot plan: no manifest path given\nusage: ${PLAN_USAGE}`);
  }
  const { config } = await loadConfigFromArgs(args, log);
  const objects = await readManifests(args.positionals);
  const started = performance.now();
  const result = await planManifests(objects, config, { hostname: hostname() });
  for (const w of result.warnings) log.warn(w);
  for (const n of result.notes) log.info(n, {}, 1);
  const plan = result.plan;
  log.info("Planned", {
    node: result.nodeName,
    services: result.services.length,
    endpoints: result.services.reduce(
      (n, s) => n + s.ports.reduce((m, p) => m + p.endpoints.length, 0),
      0,
    ),
    bytes: plan.batch.length,
    ms: Math.round((performance.now() - started) * 10) / 10,
  }, 1);
  if (isIPVSPlanOutput(plan)) {
    // IPVS mode: the virtual services (and kube-ipvs0's addresses), then the
    // nftables side; json gives both as one object.
    if (output === "json") {
      const batch: unknown = JSON.parse(new TextDecoder().decode(plan.batch));
      await out(JSON.stringify({ ipvs: plan.ipvs, nftables: batch }) + "\n");
    } else {
      await out(renderIPVSPlan(plan.ipvs) + "# nftables\n" + renderBatch(plan.batch));
    }
  } else if (output === "json") {
    await out(plan.batch);
    await out("\n");
  } else {
    await out(renderBatch(plan.batch));
  }
  return 0;
}
