/**
 * Running commands with a deadline, on the host or inside a namespace. Moved to
 * src/trace/exec.ts (`kpx trace` uses it too); re-exported here for the testbed's modules.
 * @module
 */

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
} from "../../src/trace/mod.ts";
