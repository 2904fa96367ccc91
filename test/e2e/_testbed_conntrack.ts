/**
 * conntrack inside a namespace, with its text output parsed into entries. Moved to
 * src/trace/conntrack.ts (`kpx trace` uses it too); re-exported here for the testbed.
 * @module
 */

export {
  type ConntrackEntry,
  type ConntrackResult,
  type ConntrackTuple,
  listConntrack,
  parseConntrackLine,
  parseConntrackOutput,
  runConntrack,
} from "../../src/trace/mod.ts";
