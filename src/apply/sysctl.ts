/**
 * Conntrack settings kube-proxy manages (conntrack.* in KubeProxyConfiguration):
 * the table size and TCP/UDP timeouts. Like kube-proxy, the table size is only
 * raised, never lowered; a zero setting means "leave the kernel's value".
 */
import type { Config } from "../config/mod.ts";
import { CommandFailedError, runChecked, type Runner } from "./process.ts";

/**
 * Sysctls are read and written with sysctl(8), not through /proc/sys with
 * Deno's file API: Deno requires --allow-all for any path under /proc, so
 * file access there would rule out running kpx with narrowed permissions.
 */
export async function readSysctl(runner: Runner, key: string): Promise<string | undefined> {
  const r = await runner.run(["sysctl", "-n", key]);
  if (r.code === 0) return new TextDecoder().decode(r.stdout).trim();
  // An unknown key (a module not loaded, a family disabled) is "absent".
  if (/cannot stat|No such file|unknown key/i.test(r.stderr)) return undefined;
  throw new CommandFailedError(["sysctl", "-n", key], r.code, r.stderr);
}

export async function writeSysctl(runner: Runner, key: string, value: string): Promise<void> {
  await runChecked(runner, ["sysctl", "-q", "-w", `${key}=${value}`]);
}

export interface SysctlChange {
  key: string;
  from: string | undefined;
  to: string;
}

/** What to write, given the current values (pure). */
export function conntrackSysctls(
  c: Config["conntrack"],
  cpus: number,
  current: Record<string, string | undefined>,
): SysctlChange[] {
  const out: SysctlChange[] = [];
  const want = (key: string, to: number | string) => {
    const v = String(to);
    if (current[key] !== undefined && current[key] !== v) {
      out.push({ key, from: current[key], to: v });
    }
  };
  if (c.maxPerCore > 0) {
    const max = Math.max(c.maxPerCore * cpus, c.min);
    const cur = Number(current["net.netfilter.nf_conntrack_max"] ?? "0");
    if (max > cur) want("net.netfilter.nf_conntrack_max", max);
  }
  if (c.tcpEstablishedTimeoutMs > 0) {
    want(
      "net.netfilter.nf_conntrack_tcp_timeout_established",
      Math.round(c.tcpEstablishedTimeoutMs / 1000),
    );
  }
  if (c.tcpCloseWaitTimeoutMs > 0) {
    want(
      "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
      Math.round(c.tcpCloseWaitTimeoutMs / 1000),
    );
  }
  if (c.tcpBeLiberal) want("net.netfilter.nf_conntrack_tcp_be_liberal", 1);
  if (c.udpTimeoutMs > 0) {
    want("net.netfilter.nf_conntrack_udp_timeout", Math.round(c.udpTimeoutMs / 1000));
  }
  if (c.udpStreamTimeoutMs > 0) {
    want("net.netfilter.nf_conntrack_udp_timeout_stream", Math.round(c.udpStreamTimeoutMs / 1000));
  }
  return out;
}

export const CONNTRACK_SYSCTL_KEYS = [
  "net.netfilter.nf_conntrack_max",
  "net.netfilter.nf_conntrack_tcp_timeout_established",
  "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
  "net.netfilter.nf_conntrack_tcp_be_liberal",
  "net.netfilter.nf_conntrack_udp_timeout",
  "net.netfilter.nf_conntrack_udp_timeout_stream",
];

/** Reads the current values and writes what differs; returns what changed. */
export async function applyConntrackSysctls(
  runner: Runner,
  c: Config["conntrack"],
): Promise<SysctlChange[]> {
  const current: Record<string, string | undefined> = {};
  for (const k of CONNTRACK_SYSCTL_KEYS) current[k] = await readSysctl(runner, k);
  const changes = conntrackSysctls(c, navigator.hardwareConcurrency, current);
  for (const ch of changes) {
    try {
      await writeSysctl(runner, ch.key, ch.to);
    } catch (e) {
      throw new Error(`Cannot set ${ch.key} to ${ch.to}: ${(e as Error).message}`, { cause: e });
    }
  }
  return changes;
}
