export { Planner, PlannerError } from "./planner.ts";
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
  type LocalDetection,
  type PlanContext,
  type PlanOutput,
} from "./types.ts";
export { formatBatchLines, renderBatch, renderExpr, renderStmt } from "./render.ts";
export { nextInventory } from "./inventory.ts";
export { type PendingPlan, PlanSession } from "./session.ts";
