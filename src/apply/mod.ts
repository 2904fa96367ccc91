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
  joinBatch,
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
export {
  applyConntrackSysctls,
  conntrackSysctls,
  readSysctl,
  type SysctlChange,
  writeSysctl,
} from "./sysctl.ts";
export { DEFAULT_DRAIN_TIMEOUT_MS, IPVSApplier, type IPVSApplierOptions } from "./ipvs_applier.ts";
export {
  asKernelTable,
  drainKey,
  type Graceful,
  reconcile,
  type Reconciliation,
} from "./ipvs_diff.ts";
export { DesiredIPVS, type StagedIPVS } from "./ipvs_desired.ts";
export { FakeIpvs } from "./ipvs_fake.ts";
export { ScriptedRunner } from "./scripted_runner.ts";
export { addressBatch, type DummyLink, FakeLink, IpLink, IPVS_INTERFACE } from "./ipvs_link.ts";
export { ipvsPreflight, type IPVSPreflightResult, PROBE_SERVICE } from "./ipvs_preflight.ts";
export {
  type IPVSTable,
  type KernelReal,
  type KernelService,
  NODE_PORT_RANGE,
  type Ownership,
  ownsService,
  parseIpvsList,
  sameService,
} from "./ipvs_state.ts";
export {
  applyIPVSSysctls,
  IPVSHostError,
  ipvsSysctls,
  prepareIPVSHost,
  runnerSysctl,
  type SysctlIO,
  type SysctlSetting,
} from "./ipvs_sysctl.ts";
export { type Ipvs, IpvsadmCli, IpvsApplyError } from "./ipvsadm.ts";
export { cleanupIPVS, type IPVSCleanup, ipvsLoaded, localAddresses } from "./ipvs_cleanup.ts";
