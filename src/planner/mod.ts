export { Planner, PlannerError, PlannerVersionError } from "./planner.ts";
export {
  ABI_VERSION,
  type EncodedChange,
  type EncodedService,
  encodeService,
  type ServiceChange,
} from "./encode.ts";
export {
  EMPTY_INVENTORY,
  type Inventory,
  type IPVSContext,
  type LocalDetection,
  type PlanContext,
  type PlanOutput,
} from "./types.ts";
export { formatBatchLines, renderBatch, renderExpr, renderStmt } from "./render.ts";
export { nextInventory } from "./inventory.ts";
export { type PendingPlan, PlanSession } from "./session.ts";
export {
  allServices,
  formatRestore,
  hostPort,
  type IPVSForward,
  type IPVSPlan,
  type IPVSPlanOutput,
  type IPVSProtocol,
  isIPVSPlanOutput,
  parseIPVSRecord,
  parseRestore,
  realKey,
  realOptions,
  type RealServer,
  renderIPVSPlan,
  type ServiceIPVS,
  serviceKey,
  serviceOptions,
  type VirtualService,
} from "./ipvs.ts";
