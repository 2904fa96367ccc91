/** Plan contexts shared by tests: node-a of the generated clusters. */
import type { PlanContext } from "../src/planner/mod.ts";

export const CONTEXT: PlanContext = {
  nodeName: "node-a",
  nodeZone: "zone-a",
  masqueradeBit: 14,
  masqueradeAll: false,
  dropInvalid: true,
  localDetection: { mode: "CIDR", cidrs: ["10.244.0.0/16", "fd00:10:244::/48"] },
  nodePortAddresses: null,
  serviceCIDRs: ["10.96.0.0/16"],
};
