export { Applier, type ApplierOptions, type SyncOutcome, VerificationError } from "./applier.ts";
export {
  type CleanupResult,
  clearFlows,
  conntrackArgs,
  type ConntrackFilter,
  staleFlows,
} from "./conntrack.ts";
export {
  FakeNft,
  type Marker,
  type Nft,
  NftApplyError,
  NftCli,
  TABLE_FAMILY,
  TABLE_NAME,
  type TableState,
} from "./nft.ts";
export { FakeNftables, NftBatchError } from "./nft_fake.ts";
export {
  CommandFailedError,
  type ProcessResult,
  ProcessRunner,
  runChecked,
  type Runner,
} from "./process.ts";
export {
  FEATURE_PROBES,
  preflight,
  type PreflightResult,
  readProcSysctl,
  type SysctlReader,
} from "./preflight.ts";
export { applyConntrackSysctls, conntrackSysctls, readSysctl, type SysctlChange, writeSysctl } from "./sysctl.ts";
