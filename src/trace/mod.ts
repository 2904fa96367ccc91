/**
 * `kpx trace`: real probe packets through a planned ruleset in throwaway network namespaces;
 * and the building blocks it shares with the test testbed (test/e2e re-exports them): running
 * commands in namespaces, the FFI probe client, conntrack parsing, prerequisite checks.
 * @module
 */

export {
  DEFAULT_PROBE_TIMEOUT_MS as DEFAULT_TRACE_PROBE_TIMEOUT_MS,
  DEFAULT_PROBES,
  MAX_PROBES,
  runTrace,
  type TraceOptions,
  type TraceReport,
} from "./trace.ts";
export { renderTrace, traceJson } from "./render.ts";
export { type ProbeOutcome, type TraceSummary, type Verdict, VERDICTS } from "./classify.ts";
export { type Destination, formatDestination } from "./explain.ts";
export { type SourceKind, sourceKind } from "./topology.ts";
export { TRACE_NAMESPACE_BASE } from "./lab.ts";
export { type KpxRunMode, kpxRunMode, selfCommand } from "./self_command.ts";

// Building blocks shared with test/e2e.
export {
  CommandError,
  DEFAULT_EXEC_TIMEOUT_MS,
  describe,
  execInNetns,
  type ExecOptions,
  type ExecResult,
  ipBatch,
  readSysctl,
  runChecked,
  runCommand,
  setSysctls,
} from "./exec.ts";
export { claimNamespacePrefix, deleteNetns, killProcessesIn, listNetns } from "./netns.ts";
export {
  type ConntrackEntry,
  type ConntrackResult,
  type ConntrackTuple,
  listConntrack,
  parseConntrackLine,
  parseConntrackOutput,
  runConntrack,
} from "./conntrack.ts";
export { listNftRuleset, loadNftBatch, loadNftText } from "./nft.ts";
export {
  type KernelPrereqs,
  type KernelPrereqsOptions,
  requireKernelPrereqs,
  shouldSkipKernelTests,
} from "./prereqs.ts";
export { probeFromNetns, type ProbeFromNetnsOptions, type ProbeManyOptions } from "./probe.ts";
export { parseBatch, probeMain, runProbes } from "./probe_client.ts";
export {
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeBatch,
  type ProbeError,
  type ProbeFailure,
  type ProbeRequest,
  type ProbeResult,
  type ProbeSuccess,
  type Protocol,
} from "./probe_types.ts";
export { crc32c, sctpInitPacket } from "./sctp.ts";
