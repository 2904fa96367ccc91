/**
 * Sending probe requests from inside a namespace: one probe-client process per batch.
 * @module
 */

import { CommandError, execInNetns } from "./exec.ts";
import {
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeBatch,
  type ProbeRequest,
  type ProbeResult,
} from "./probe_types.ts";

/** Allowance for starting Deno and the module on top of the requests' own deadlines. */
const STARTUP_ALLOWANCE_MS = 15_000;
const DEFAULT_CONCURRENCY = 64;

export interface ProbeManyOptions {
  /** Requests in flight at once (default 64). Each has its own socket either way. */
  concurrency?: number;
}

export interface ProbeFromNetnsOptions extends ProbeManyOptions {
  /** argv of the probe client (it reads a ProbeBatch as JSON on stdin); see selfCommand(). */
  command: readonly string[];
  /** Aborting kills the probe client. */
  signal?: AbortSignal;
}

/** Sends all requests from namespace `ns`; results are in request order. */
export async function probeFromNetns(
  ns: string,
  requests: readonly ProbeRequest[],
  options: ProbeFromNetnsOptions,
): Promise<ProbeResult[]> {
  if (requests.length === 0) return [];
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const longest = Math.max(...requests.map((r) => r.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS));
  const rounds = Math.ceil(requests.length / Math.max(1, concurrency));
  const batch: ProbeBatch = { requests: [...requests], concurrency };
  const what = `send ${requests.length} probe(s) from ${ns}`;
  const result = await execInNetns(ns, [...options.command], {
    stdin: JSON.stringify(batch),
    timeoutMs: STARTUP_ALLOWANCE_MS + longest * rounds,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (result.code !== 0) {
    const reason = result.timedOut ? "probe client timed out" : result.stderr.trim();
    throw new CommandError(`Cannot ${what}: ${reason || `exit code ${result.code}`}`, result);
  }
  try {
    return JSON.parse(result.stdout) as ProbeResult[];
  } catch (error) {
    throw new CommandError(
      `Cannot ${what}: unreadable output ${result.stdout.slice(0, 200)}`,
      result,
      { cause: error },
    );
  }
}
