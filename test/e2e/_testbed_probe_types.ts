/**
 * Types shared by the probe client and the testbed. The client and its types moved to
 * src/trace/ (`kpx trace` sends its probes with it); the testbed keeps its own narrower
 * request type: echo servers speak TCP and UDP only.
 * @module
 */

import type { ProbeRequest as AnyProbeRequest } from "../../src/trace/mod.ts";

export {
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeBatch,
  type ProbeError,
  type ProbeFailure,
  type ProbeResult,
  type ProbeSuccess,
} from "../../src/trace/mod.ts";

export type Protocol = "tcp" | "udp";

/** One request to an echo server. */
export interface ProbeRequest extends AnyProbeRequest {
  protocol: Protocol;
}
