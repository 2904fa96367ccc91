/** `kpx plan`: manifests in, nftables batch out. */
import { planContext } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { EMPTY_INVENTORY, Planner, renderBatch } from "../planner/mod.ts";
import { chooseNode, feedState, readManifests } from "../source/mod.ts";
import { type FlagSpec, parseArgs, UsageError } from "./args.ts";
import { CONFIG_FLAG, hostname, loadConfigFromArgs } from "./common.ts";

export const PLAN_FLAGS: Record<string, FlagSpec> = {
  ...CONFIG_FLAG,
  output: { type: "string", short: "o", help: "json (the raw batch for nft -j -f) or text (default: readable)" },
};

export const PLAN_USAGE = "kpx plan [--config FILE] [flags] PATH...";

export async function planCommand(argv: string[], log: Logger, out: (s: string | Uint8Array) => Promise<void>): Promise<number> {
  const args = parseArgs(argv, PLAN_FLAGS);
  const output = (args.flags["output"] as string | undefined) ?? "text";
  if (output !== "json" && output !== "text") throw new UsageError(`Cannot plan: --output must be json or text, got ${JSON.stringify(output)}`);
  if (args.positionals.length === 0) throw new UsageError(`Cannot plan: no manifest path given\nusage: ${PLAN_USAGE}`);
  const { config } = await loadConfigFromArgs(args, log);
  const objects = await readManifests(args.positionals);
  const nodeName = config.hostnameOverride || chooseNode(objects, "") || hostname();
  const fed = feedState(objects, nodeName);
  for (const w of fed.warnings) log.warn(w);
  for (const i of fed.ignored) log.info(i, {}, 2);
  for (const id of fed.state.serviceIds()) {
    const conflict = fed.state.conflict(id);
    if (conflict) log.warn(conflict.message);
  }
  if (!fed.node) log.info("No Node object for this node in the manifests: node-dependent rules use defaults", { node: nodeName });
  const ctx = planContext(
    { ...config, serviceCIDRs: [...config.serviceCIDRs, ...fed.serviceCIDRs] },
    nodeName,
    fed.node,
  );
  for (const n of ctx.notes) log.info(n);
  const planner = await Planner.load();
  const services = fed.state.services();
  const started = performance.now();
  const plan = planner.planFull(services, ctx, EMPTY_INVENTORY, 1);
  log.info("Planned", {
    node: nodeName,
    services: services.length,
    endpoints: services.reduce((n, s) => n + s.ports.reduce((m, p) => m + p.endpoints.length, 0), 0),
    bytes: plan.batch.length,
    ms: Math.round((performance.now() - started) * 10) / 10,
  }, 1);
  for (const w of plan.warnings) log.warn(w);
  if (output === "json") {
    await out(plan.batch);
    await out("\n");
  } else {
    await out(renderBatch(plan.batch));
  }
  return 0;
}
