/**
 * Conntrack settings kube-proxy manages (conntrack.* in KubeProxyConfiguration):
 * the table size and TCP/UDP timeouts. Like kube-proxy, the table size is only
 * raised, never lowered; a zero setting means "leave the kernel's value".
 */
import type { Config } from "../config/mod.ts";
import { readProcSysctl } from "./preflight.ts";

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
export async function applyConntrackSysctls(c: Config["conntrack"]): Promise<SysctlChange[]> {
  const current: Record<string, string | undefined> = {};
  for (const k of CONNTRACK_SYSCTL_KEYS) current[k] = await readProcSysctl(k);
  const changes = conntrackSysctls(c, navigator.hardwareConcurrency, current);
  for (const ch of changes) {
    try {
      await Deno.writeTextFile(`/proc/sys/${ch.key.replaceAll(".", "/")}`, ch.to);
    } catch (e) {
      throw new Error(`Cannot set ${ch.key} to ${ch.to}: ${(e as Error).message}`, { cause: e });
    }
  }
  return changes;
}
