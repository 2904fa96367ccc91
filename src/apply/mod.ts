export { Applier, type ApplierOptions, type SyncOutcome, VerificationError } from "./applier.ts";
export { clearFlows, type CleanupResult, type ConntrackFilter, conntrackArgs, staleFlows } from "./conntrack.ts";
export { FakeNft, type Marker, type Nft, NftApplyError, NftCli, TABLE_FAMILY, TABLE_NAME, type TableState } from "./nft.ts";
export { FakeNftables, NftBatchError } from "./nft_fake.ts";
export { CommandFailedError, type ProcessResult, ProcessRunner, type Runner, runChecked } from "./process.ts";
export { FEATURE_PROBES, preflight, type PreflightResult, readProcSysctl, type SysctlReader } from "./preflight.ts";
export { applyConntrackSysctls, conntrackSysctls, type SysctlChange } from "./sysctl.ts";
