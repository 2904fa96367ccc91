/**
 * Every setting kpx knows, once: its KubeProxyConfiguration field, its
 * kube-proxy flag, how to read it, and where it goes. The config file and the
 * command line both go through this table, so they cannot drift apart.
 */
import { parseCIDR } from "../state/mod.ts";
import {
  type Config,
  ConfigError,
  defaultConfig,
  type DetectLocalMode,
  IPVS_SCHEDULERS,
  type IPVSScheduler,
} from "./config.ts";
import { parseDuration } from "./duration.ts";

export type SettingType = "string" | "bool" | "int" | "duration" | "list";

/** Settings that depend on the final proxy mode are collected, then resolved. */
export interface ModeScoped {
  syncPeriodMs: Partial<Record<"any" | "iptables" | "nftables" | "ipvs", number>>;
  minSyncPeriodMs: Partial<Record<"any" | "iptables" | "nftables" | "ipvs", number>>;
}

export interface Setting {
  /** Dot path in KubeProxyConfiguration, if the setting has one. */
  path?: string;
  /** kube-proxy's flag name (without --), if the setting has one. */
  flag?: string;
  type: SettingType;
  help: string;
  /** Absent: kpx knows the setting but does not implement it (it says so once). */
  apply?: (c: Config, v: Value, scoped: ModeScoped, where: string) => void;
}

export type Value = string | boolean | number | string[];

function cidrs(v: Value, where: string): string[] {
  const items = (Array.isArray(v) ? v : String(v).split(",")).map((s) => s.trim()).filter(Boolean);
  return items.map((s) => {
    const c = parseCIDR(s);
    if (!c) throw new ConfigError(where, `${JSON.stringify(s)} is not a CIDR`);
    return c.text;
  });
}

function scoped(
  key: "syncPeriodMs" | "minSyncPeriodMs",
  section: "any" | "iptables" | "nftables" | "ipvs",
) {
  return (_c: Config, v: Value, s: ModeScoped) => {
    s[key][section] = v as number;
  };
}

const DETECT_LOCAL_MODES: DetectLocalMode[] = [
  "ClusterCIDR",
  "NodeCIDR",
  "BridgeInterface",
  "InterfaceNamePrefix",
];

export const SETTINGS: Setting[] = [
  {
    path: "mode",
    flag: "proxy-mode",
    type: "string",
    help: "nftables (default) or ipvs",
    apply: (c, v, _s, where) => {
      const m = String(v);
      if (m === "") {
        // Empty is kube-proxy's "the default" (also when a flag says it over the file).
        c.mode = defaultConfig().mode;
        c.modeExplicit = false;
        return;
      }
      if (m !== "nftables" && m !== "ipvs") {
        throw new ConfigError(
          where,
          `mode ${JSON.stringify(m)} is not supported (kpx implements nftables and ipvs)`,
        );
      }
      c.mode = m;
      c.modeExplicit = true;
    },
  },
  {
    path: "clientConnection.kubeconfig",
    flag: "kubeconfig",
    type: "string",
    help: "kubeconfig file (default: in-cluster)",
    apply: (c, v) => c.kubeconfig = String(v),
  },
  {
    flag: "master",
    type: "string",
    help: "API server address (overrides the kubeconfig's)",
    apply: (c, v) => c.master = String(v),
  },
  {
    path: "hostnameOverride",
    flag: "hostname-override",
    type: "string",
    help: "node name to use instead of the hostname",
    apply: (c, v) => c.hostnameOverride = String(v).trim().toLowerCase(),
  },
  {
    path: "clusterCIDR",
    flag: "cluster-cidr",
    type: "string",
    help: "pod CIDR(s) of the cluster, comma-separated",
    apply: (c, v, _s, w) => c.clusterCIDRs = cidrs(v, w),
  },
  {
    path: "detectLocalMode",
    flag: "detect-local-mode",
    type: "string",
    help: "ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix",
    apply: (c, v, _s, where) => {
      const m = String(v);
      if (m === "") {
        c.detectLocalMode = defaultConfig().detectLocalMode;
        return;
      }
      if (!DETECT_LOCAL_MODES.includes(m as DetectLocalMode)) {
        throw new ConfigError(
          where,
          `${JSON.stringify(m)} is not one of ${DETECT_LOCAL_MODES.join(", ")}`,
        );
      }
      c.detectLocalMode = m as DetectLocalMode;
    },
  },
  {
    path: "detectLocal.bridgeInterface",
    flag: "pod-bridge-interface",
    type: "string",
    help: "bridge of local pods (BridgeInterface mode)",
    apply: (c, v) => c.bridgeInterface = String(v),
  },
  {
    path: "detectLocal.interfaceNamePrefix",
    flag: "pod-interface-name-prefix",
    type: "string",
    help: "interface prefix of local pods (InterfaceNamePrefix mode)",
    apply: (c, v) => c.interfaceNamePrefix = String(v),
  },
  {
    path: "nodePortAddresses",
    flag: "nodeport-addresses",
    type: "list",
    help: 'CIDRs (or "primary") node ports accept traffic on; default all local addresses',
    apply: (c, v, _s, where) => {
      const items = (v as string[]).map((s) => s.trim()).filter(Boolean);
      c.nodePortAddresses = items.map((s) => s === "primary" ? s : cidrs(s, where)[0]!);
    },
  },
  // The flag sets masqueradeAll (true or false) over whatever the file said;
  // in the file, any of the sections that says true turns it on.
  {
    flag: "masquerade-all",
    type: "bool",
    help: "masquerade all traffic to ClusterIPs",
    apply: (c, v) => c.masqueradeAll = v as boolean,
  },
  ...["iptables", "nftables", "linux"].map((section): Setting => ({
    path: `${section}.masqueradeAll`,
    type: "bool",
    help: "masquerade all traffic to ClusterIPs",
    apply: (c, v) => c.masqueradeAll = c.masqueradeAll || v as boolean,
  })),
  ...["iptables", "nftables"].map((section): Setting => ({
    path: `${section}.masqueradeBit`,
    ...(section === "iptables" ? { flag: "iptables-masquerade-bit" } : {}),
    type: "int",
    help: "packet-mark bit that flags packets for masquerading (0-31)",
    apply: (c, v, _s, where) => {
      const n = v as number;
      if (n < 0 || n > 31) throw new ConfigError(where, `${n} is not a bit number 0-31`);
      c.masqueradeBit = n;
    },
  })),
  {
    path: "syncPeriod",
    flag: "sync-period",
    type: "duration",
    help: "full resync period (default 30s)",
    apply: scoped("syncPeriodMs", "any"),
  },
  {
    path: "minSyncPeriod",
    flag: "min-sync-period",
    type: "duration",
    help: "minimum time between syncs (default 1s)",
    apply: scoped("minSyncPeriodMs", "any"),
  },
  {
    path: "iptables.syncPeriod",
    flag: "iptables-sync-period",
    type: "duration",
    help: "full resync period",
    apply: scoped("syncPeriodMs", "iptables"),
  },
  {
    path: "iptables.minSyncPeriod",
    flag: "iptables-min-sync-period",
    type: "duration",
    help: "minimum time between syncs",
    apply: scoped("minSyncPeriodMs", "iptables"),
  },
  {
    path: "nftables.syncPeriod",
    type: "duration",
    help: "full resync period",
    apply: scoped("syncPeriodMs", "nftables"),
  },
  {
    path: "nftables.minSyncPeriod",
    type: "duration",
    help: "minimum time between syncs",
    apply: scoped("minSyncPeriodMs", "nftables"),
  },
  {
    path: "ipvs.syncPeriod",
    flag: "ipvs-sync-period",
    type: "duration",
    help: "full resync period (ipvs mode)",
    apply: scoped("syncPeriodMs", "ipvs"),
  },
  {
    path: "ipvs.minSyncPeriod",
    flag: "ipvs-min-sync-period",
    type: "duration",
    help: "minimum time between syncs (ipvs mode)",
    apply: scoped("minSyncPeriodMs", "ipvs"),
  },
  {
    path: "ipvs.scheduler",
    flag: "ipvs-scheduler",
    type: "string",
    help: `IPVS scheduler: ${IPVS_SCHEDULERS.join(", ")}`,
    apply: (c, v, _s, where) => {
      const s = String(v);
      if (s === "") {
        c.ipvs.scheduler = defaultConfig().ipvs.scheduler;
        return;
      }
      if (!IPVS_SCHEDULERS.includes(s as IPVSScheduler)) {
        throw new ConfigError(
          where,
          `${JSON.stringify(s)} is not one of ${IPVS_SCHEDULERS.join(", ")}`,
        );
      }
      c.ipvs.scheduler = s as IPVSScheduler;
    },
  },
  {
    path: "ipvs.strictARP",
    flag: "ipvs-strict-arp",
    type: "bool",
    help: "arp_ignore/arp_announce for IPVS service IPs",
    apply: (c, v) => c.ipvs.strictARP = v as boolean,
  },
  {
    path: "ipvs.excludeCIDRs",
    flag: "ipvs-exclude-cidrs",
    type: "list",
    help: "virtual services kpx must not remove",
    apply: (c, v, _s, w) => c.ipvs.excludeCIDRs = cidrs(v, w),
  },
  {
    path: "ipvs.tcpTimeout",
    flag: "ipvs-tcp-timeout",
    type: "duration",
    help: "IPVS TCP session timeout",
    apply: (c, v) => c.ipvs.tcpTimeoutMs = v as number,
  },
  {
    path: "ipvs.tcpFinTimeout",
    flag: "ipvs-tcpfin-timeout",
    type: "duration",
    help: "IPVS TCP FIN timeout",
    apply: (c, v) => c.ipvs.tcpFinTimeoutMs = v as number,
  },
  {
    path: "ipvs.udpTimeout",
    flag: "ipvs-udp-timeout",
    type: "duration",
    help: "IPVS UDP timeout",
    apply: (c, v) => c.ipvs.udpTimeoutMs = v as number,
  },
  {
    path: "healthzBindAddress",
    flag: "healthz-bind-address",
    type: "string",
    help: "ip:port of /healthz and /livez (default 0.0.0.0:10256)",
    apply: (c, v) => c.healthzBindAddress = String(v),
  },
  {
    path: "metricsBindAddress",
    flag: "metrics-bind-address",
    type: "string",
    help: "ip:port of /metrics (default 127.0.0.1:10249)",
    apply: (c, v) => c.metricsBindAddress = String(v),
  },
  {
    flag: "service-cluster-ip-range",
    type: "string",
    help: "kpx: service CIDR(s); unallocated addresses in them are rejected",
    apply: (c, v, _s, w) => c.serviceCIDRs = cidrs(v, w),
  },
  ...conntrackSettings(),
  {
    path: "logging.format",
    flag: "logging-format",
    type: "string",
    help: 'logfmt (default; "text" is accepted) or json',
    apply: (c, v, _s, where) => {
      const f = String(v);
      if (f === "text" || f === "logfmt" || f === "") c.logFormat = "logfmt";
      else if (f === "json") c.logFormat = "json";
      else throw new ConfigError(where, `${JSON.stringify(f)} is not text, logfmt or json`);
    },
  },
  {
    path: "logging.verbosity",
    flag: "v",
    type: "int",
    help: "log verbosity (0-10)",
    apply: (c, v) => c.verbosity = v as number,
  },
  // Known to kube-proxy, accepted, not used by kpx.
  { path: "clientConnection.acceptContentTypes", type: "string", help: "" },
  { path: "clientConnection.contentType", flag: "kube-api-content-type", type: "string", help: "" },
  { path: "clientConnection.qps", flag: "kube-api-qps", type: "int", help: "" },
  { path: "clientConnection.burst", flag: "kube-api-burst", type: "int", help: "" },
  { path: "logging.flushFrequency", type: "string", help: "" },
  { path: "logging.vmodule", flag: "vmodule", type: "string", help: "" },
  { path: "bindAddress", flag: "bind-address", type: "string", help: "" },
  { path: "bindAddressHardFail", flag: "bind-address-hard-fail", type: "bool", help: "" },
  { path: "enableProfiling", flag: "profiling", type: "bool", help: "" },
  {
    path: "showHiddenMetricsForVersion",
    flag: "show-hidden-metrics-for-version",
    type: "string",
    help: "",
  },
  { path: "iptables.localhostNodePorts", type: "bool", help: "" },
  { path: "oomScoreAdj", flag: "oom-score-adj", type: "int", help: "" },
  { path: "linux.oomScoreAdj", type: "int", help: "" },
  { path: "configSyncPeriod", flag: "config-sync-period", type: "duration", help: "" },
  { path: "portRange", type: "string", help: "" },
  { path: "windowsRunAsService", type: "bool", help: "" },
];

function conntrackSettings(): Setting[] {
  const out: Setting[] = [];
  for (const prefix of ["conntrack", "linux.conntrack"]) {
    const main = prefix === "conntrack";
    const flag = (f: string) => main ? { flag: f } : {};
    out.push(
      {
        path: `${prefix}.maxPerCore`,
        ...flag("conntrack-max-per-core"),
        type: "int",
        help: "conntrack entries per CPU (sysctl nf_conntrack_max)",
        apply: (c, v) => c.conntrack.maxPerCore = v as number,
      },
      {
        path: `${prefix}.min`,
        ...flag("conntrack-min"),
        type: "int",
        help: "minimum conntrack entries",
        apply: (c, v) => c.conntrack.min = v as number,
      },
      {
        path: `${prefix}.tcpEstablishedTimeout`,
        ...flag("conntrack-tcp-timeout-established"),
        type: "duration",
        help: "idle timeout of established TCP connections",
        apply: (c, v) => c.conntrack.tcpEstablishedTimeoutMs = v as number,
      },
      {
        path: `${prefix}.tcpCloseWaitTimeout`,
        ...flag("conntrack-tcp-timeout-close-wait"),
        type: "duration",
        help: "timeout of TCP connections in CLOSE_WAIT",
        apply: (c, v) => c.conntrack.tcpCloseWaitTimeoutMs = v as number,
      },
      {
        path: `${prefix}.tcpBeLiberal`,
        ...flag("conntrack-tcp-be-liberal"),
        type: "bool",
        help: "accept out-of-window TCP packets (and do not drop invalid ones)",
        apply: (c, v) => c.conntrack.tcpBeLiberal = v as boolean,
      },
      {
        path: `${prefix}.udpTimeout`,
        ...flag("conntrack-udp-timeout"),
        type: "duration",
        help: "UDP conntrack timeout",
        apply: (c, v) => c.conntrack.udpTimeoutMs = v as number,
      },
      {
        path: `${prefix}.udpStreamTimeout`,
        ...flag("conntrack-udp-timeout-stream"),
        type: "duration",
        help: "UDP stream conntrack timeout",
        apply: (c, v) => c.conntrack.udpStreamTimeoutMs = v as number,
      },
    );
  }
  return out;
}

/** Reads a raw value (from YAML or a flag string) as the setting's type. */
export function readValue(s: Setting, raw: unknown, where: string): Value {
  switch (s.type) {
    case "string":
      if (typeof raw !== "string") {
        throw new ConfigError(where, `expected a string, got ${JSON.stringify(raw)}`);
      }
      return raw;
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "false") return raw === "true";
      throw new ConfigError(where, `expected true or false, got ${JSON.stringify(raw)}`);
    case "int": {
      const n = typeof raw === "string" && /^-?[0-9]+$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== "number" || !Number.isInteger(n)) {
        throw new ConfigError(where, `expected an integer, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case "duration": {
      const ms = typeof raw === "string" ? parseDuration(raw) : null;
      if (ms === null) {
        throw new ConfigError(
          where,
          `expected a duration such as 30s or 1m0s, got ${JSON.stringify(raw)}`,
        );
      }
      return ms;
    }
    case "list":
      if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw as string[];
      if (typeof raw === "string") return raw.split(",");
      throw new ConfigError(where, `expected a list of strings, got ${JSON.stringify(raw)}`);
  }
}

export function settingByPath(path: string): Setting | undefined {
  return SETTINGS.find((s) => s.path === path);
}

export function settingByFlag(flag: string): Setting | undefined {
  return SETTINGS.find((s) => s.flag === flag);
}

/** Dot paths that hold other fields ("conntrack", "detectLocal", "linux.conntrack", ...). */
const SECTIONS = new Set(
  SETTINGS.flatMap((s) => {
    const parts = s.path?.split(".") ?? [];
    return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("."));
  }),
);

/** Whether path is a section of KubeProxyConfiguration that kpx knows the fields of. */
export function isSection(path: string): boolean {
  return SECTIONS.has(path);
}

/** Chooses the sync periods for the final mode: top level, else the mode's section. */
export function resolveModeScoped(c: Config, s: ModeScoped): void {
  const pick = (m: ModeScoped["syncPeriodMs"]) =>
    m.any ?? (c.mode === "ipvs" ? m.ipvs : m.nftables ?? m.iptables);
  const sync = pick(s.syncPeriodMs);
  const min = pick(s.minSyncPeriodMs);
  if (sync !== undefined) c.syncPeriodMs = sync;
  if (min !== undefined) c.minSyncPeriodMs = min;
}
