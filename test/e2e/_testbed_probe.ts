/**
 * Sending probe requests from inside a namespace: one probe_client.ts process per batch (the
 * generic part lives in src/trace/probe.ts; the testbed starts the client its own way).
 * @module
 */

import { probeFromNetns as probeWith, type ProbeManyOptions } from "../../src/trace/mod.ts";
import { helperCommands } from "./_testbed_helpers.ts";
import type { ProbeRequest, ProbeResult } from "./_testbed_probe_types.ts";

export type { ProbeManyOptions };

/** Sends all requests from namespace `ns`; results are in request order. */
export function probeFromNetns(
  ns: string,
  requests: readonly ProbeRequest[],
  options: ProbeManyOptions = {},
): Promise<ProbeResult[]> {
  return probeWith(ns, requests, { ...options, command: helperCommands().probeClient });
}
