/** kpx's validated configuration: one value built from defaults, a config file and flags. */

export type ProxyMode = "nftables" | "ipvs";
export type DetectLocalMode =
  | "ClusterCIDR"
  | "NodeCIDR"
  | "BridgeInterface"
  | "InterfaceNamePrefix";
export type LogFormat = "logfmt" | "json";

export const IPVS_SCHEDULERS = [
  "rr",
  "wrr",
  "lc",
  "wlc",
  "lblc",
  "lblcr",
  "sh",
  "dh",
  "sed",
  "nq",
  "mh",
] as const;
export type IPVSScheduler = typeof IPVS_SCHEDULERS[number];

export interface Config {
  mode: ProxyMode;
  /** Set when the mode was chosen explicitly (then kpx refuses to fall back). */
  modeExplicit: boolean;
  kubeconfig: string;
  master: string;
  hostnameOverride: string;
  /** Canonical CIDRs from clusterCIDR (comma-separated for dual-stack). */
  clusterCIDRs: string[];
  detectLocalMode: DetectLocalMode;
  bridgeInterface: string;
  interfaceNamePrefix: string;
  /** CIDRs and the keyword "primary"; empty: every local address. */
  nodePortAddresses: string[];
  masqueradeAll: boolean;
  masqueradeBit: number;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  healthzBindAddress: string;
  metricsBindAddress: string;
  /** kpx extension: service CIDRs whose unallocated addresses are rejected. */
  serviceCIDRs: string[];
  conntrack: {
    maxPerCore: number;
    min: number;
    tcpEstablishedTimeoutMs: number;
    tcpCloseWaitTimeoutMs: number;
    tcpBeLiberal: boolean;
    udpTimeoutMs: number;
    udpStreamTimeoutMs: number;
  };
  ipvs: {
    scheduler: IPVSScheduler;
    strictARP: boolean;
    excludeCIDRs: string[];
    tcpTimeoutMs: number;
    tcpFinTimeoutMs: number;
    udpTimeoutMs: number;
  };
  logFormat: LogFormat;
  verbosity: number;
}

export function defaultConfig(): Config {
  return {
    mode: "nftables",
    modeExplicit: false,
    kubeconfig: "",
    master: "",
    hostnameOverride: "",
    clusterCIDRs: [],
    detectLocalMode: "ClusterCIDR",
    bridgeInterface: "",
    interfaceNamePrefix: "",
    nodePortAddresses: [],
    masqueradeAll: false,
    masqueradeBit: 14,
    syncPeriodMs: 30_000,
    minSyncPeriodMs: 1_000,
    healthzBindAddress: "0.0.0.0:10256",
    metricsBindAddress: "127.0.0.1:10249",
    serviceCIDRs: [],
    conntrack: {
      maxPerCore: 32768,
      min: 131072,
      tcpEstablishedTimeoutMs: 24 * 3600_000,
      tcpCloseWaitTimeoutMs: 3600_000,
      tcpBeLiberal: false,
      udpTimeoutMs: 0,
      udpStreamTimeoutMs: 0,
    },
    ipvs: {
      scheduler: "rr",
      strictARP: false,
      excludeCIDRs: [],
      tcpTimeoutMs: 0,
      tcpFinTimeoutMs: 0,
      udpTimeoutMs: 0,
    },
    logFormat: "logfmt",
    verbosity: 0,
  };
}

/** A configuration value kpx cannot accept, with where it came from. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly field: string, readonly reason: string, options?: ErrorOptions) {
    super(`Cannot use ${field}: ${reason}`, options);
  }
}
