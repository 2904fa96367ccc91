/** Manifests + configuration -> planned batch: shared by `kpx plan`, `kpx trace` and tests. */
import { type Config, planContext } from "../config/mod.ts";
import { EMPTY_INVENTORY, type PlanContext, Planner, type PlanOutput } from "../planner/mod.ts";
import { chooseNode, feedState, type ManifestObject } from "../source/mod.ts";
import type { NodeSpec, Service } from "../state/mod.ts";

export interface ManifestPlan {
  nodeName: string;
  node: NodeSpec | null;
  services: Service[];
  context: PlanContext;
  plan: PlanOutput;
  /** Invalid objects, conflicts, planner warnings: one line each. */
  warnings: string[];
  /** Informational notes (ignored objects, configuration facts). */
  notes: string[];
}

export async function planManifests(
  objects: readonly ManifestObject[],
  config: Config,
  opts: { hostname?: string; planner?: Planner } = {},
): Promise<ManifestPlan> {
  const nodeName = config.hostnameOverride || chooseNode(objects, "") || opts.hostname || "";
  const fed = feedState(objects, nodeName);
  const warnings = [...fed.warnings];
  for (const id of fed.state.serviceIds()) {
    const conflict = fed.state.conflict(id);
    if (conflict) warnings.push(conflict.message);
  }
  const ctx = planContext(
    { ...config, serviceCIDRs: [...config.serviceCIDRs, ...fed.serviceCIDRs] },
    nodeName,
    fed.node,
  );
  const notes = [...fed.ignored, ...ctx.notes];
  if (!fed.node) notes.push(`no Node object named ${JSON.stringify(nodeName)} in the manifests`);
  const { notes: _n, ...context } = ctx;
  const planner = opts.planner ?? await Planner.load();
  const services = fed.state.services();
  // IPVS mode's plan is an IPVSPlanOutput (isIPVSPlanOutput): the batch plus virtual services.
  const plan = config.mode === "ipvs"
    ? planner.planIPVSFull(services, context, EMPTY_INVENTORY, 1)
    : planner.planFull(services, context, EMPTY_INVENTORY, 1);
  warnings.push(...plan.warnings);
  return { nodeName, node: fed.node, services, context, plan, warnings, notes };
}
