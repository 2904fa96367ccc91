/**
 * The kernel settings IPVS mode needs, as kube-proxy's IPVS proxier sets them
 * (pkg/proxy/ipvs/proxier.go). Sysctls under net.ipv4.vs and net.ipv4.conf
 * are per network namespace: they apply to the namespace kpx runs in.
 */
import type { Config } from "../config/mod.ts";
import type { Runner } from "./process.ts";
import { readSysctl, type SysctlChange, writeSysctl } from "./sysctl.ts";
import type { Ipvs } from "./ipvsadm.ts";

export interface SysctlSetting {
  key: string;
  value: string;
  why: string;
}

/** "5.10.0-23-amd64" -> [5, 10]; [0, 0] when unreadable. */
function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** What IPVS mode sets (pure): kernel release as `uname -r` prints it. */
export function ipvsSysctls(ipvs: Config["ipvs"], kernelRelease: string): SysctlSetting[] {
  const out: SysctlSetting[] = [
    {
      key: "net.ipv4.vs.conntrack",
      value: "1",
      why: "IPVS connections go through conntrack, so nftables can masquerade them",
    },
    {
      key: "net.ipv4.vs.expire_nodest_conn",
      value: "1",
      why:
        "a connection to a deleted real server is dropped at its next packet, so the client reconnects elsewhere",
    },
    {
      key: "net.ipv4.vs.expire_quiescent_template",
      value: "1",
      why: "persistence (ClientIP affinity) does not keep clients on a draining real server",
    },
  ];
  const [major, minor] = kernelVersion(kernelRelease);
  if (major > 0 && (major < 5 || (major === 5 && minor < 9))) {
    // Before 5.9, conn_reuse_mode=1 made a reused source port wait a second
    // for its old connection to expire (kube-proxy sets 0 on these kernels).
    out.push({
      key: "net.ipv4.vs.conn_reuse_mode",
      value: "0",
      why: "no 1 s stall on reused source ports (kernel before 5.9)",
    });
  }
  if (ipvs.strictARP) {
    out.push(
      {
        key: "net.ipv4.conf.all.arp_ignore",
        value: "1",
        why:
          "strictARP: answer ARP only for addresses of the receiving interface (not kube-ipvs0's)",
      },
      {
        key: "net.ipv4.conf.all.arp_announce",
        value: "2",
        why: "strictARP: never announce kube-ipvs0's addresses as ARP sources",
      },
    );
  }
  return out;
}

export interface SysctlIO {
  read(key: string): Promise<string | undefined>;
  write(key: string, value: string): Promise<void>;
}

/** Through sysctl(8), as every other sysctl kpx reads or writes (see sysctl.ts). */
export function runnerSysctl(runner: Runner): SysctlIO {
  return {
    read: (key) => readSysctl(runner, key),
    write: (key, value) => writeSysctl(runner, key, value),
  };
}

/**
 * A setting IPVS mode needs could not be read or set: names the sysctl (or
 * `ipvsadm --set` for IPVS's timeouts) and what had been changed before it,
 * so the caller can fall back to nftables mode or refuse, and say which.
 */
export class IPVSHostError extends Error {
  override name = "IPVSHostError";
  /** The sysctl key, or "ipvsadm --set" for IPVS's connection timeouts. */
  readonly setting: string;
  /** What was changed on the node before the failure (left in place). */
  readonly applied: readonly SysctlChange[];
  constructor(
    setting: string,
    message: string,
    options: ErrorOptions & { applied?: readonly SysctlChange[] } = {},
  ) {
    super(message, options);
    this.setting = setting;
    this.applied = options.applied ?? [];
  }
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Writes the settings that differ; a missing key (IPVS not loaded) is an error. */
export async function applyIPVSSysctls(
  settings: readonly SysctlSetting[],
  io: SysctlIO,
): Promise<SysctlChange[]> {
  const changes: SysctlChange[] = [];
  for (const s of settings) {
    let from: string | undefined;
    try {
      from = await io.read(s.key);
    } catch (e) {
      throw new IPVSHostError(s.key, `Cannot read ${s.key}: ${reason(e)}`, {
        cause: e,
        applied: changes,
      });
    }
    if (from === undefined) {
      throw new IPVSHostError(
        s.key,
        `Cannot set ${s.key}: the kernel has no such setting (is the ip_vs module loaded?)`,
        { applied: changes },
      );
    }
    if (from === s.value) continue;
    try {
      await io.write(s.key, s.value);
    } catch (e) {
      throw new IPVSHostError(s.key, `Cannot set ${s.key} to ${s.value}: ${reason(e)}`, {
        cause: e,
        applied: changes,
      });
    }
    changes.push({ key: s.key, from, to: s.value });
  }
  return changes;
}

/**
 * Everything IPVS mode sets on the node before its first sync: the sysctls
 * above and, when configured, IPVS's own connection timeouts (ipvsadm --set;
 * 0 leaves a timeout as the kernel has it, as kube-proxy does). Any failure
 * is an IPVSHostError naming the setting.
 */
export async function prepareIPVSHost(
  ipvsConfig: Config["ipvs"],
  deps: { ipvs: Pick<Ipvs, "setTimeouts">; kernelRelease: string; sysctl: SysctlIO },
): Promise<SysctlChange[]> {
  const changes = await applyIPVSSysctls(ipvsSysctls(ipvsConfig, deps.kernelRelease), deps.sysctl);
  const [tcp, fin, udp] = [
    ipvsConfig.tcpTimeoutMs,
    ipvsConfig.tcpFinTimeoutMs,
    ipvsConfig.udpTimeoutMs,
  ].map((ms) => Math.round(ms / 1000));
  if (tcp || fin || udp) {
    try {
      await deps.ipvs.setTimeouts(tcp!, fin!, udp!);
    } catch (e) {
      throw new IPVSHostError(
        "ipvsadm --set",
        `Cannot set IPVS's timeouts (ipvsadm --set ${tcp} ${fin} ${udp}): ${reason(e)}`,
        { cause: e, applied: changes },
      );
    }
  }
  return changes;
}
