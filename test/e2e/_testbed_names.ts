/**
 * Namespace names. Every testbed gets a prefix `kpxt<pid>x<counter>` so testbeds in parallel
 * processes (or in one process) never collide, and leftovers name the process that made them.
 *
 * Interface names never carry the prefix: each interface lives inside one of our namespaces
 * (created there directly, never in the root namespace), so short fixed names such as `eth0`
 * or `veth-0a` cannot clash and stay within the kernel's 15-character limit.
 * @module
 */

import {
  claimNamespacePrefix,
  killProcessesIn,
  listNetns,
  runCommand,
} from "../../src/trace/mod.ts";

export { killProcessesIn, listNetns };

export const TESTBED_NAMESPACE_PREFIX = "kpxt";
// kpxt<pid>x<counter>-<role>; the prerequisite check uses kpxt<pid>x-prereq.
const PREFIX_PATTERN = /^kpxt(\d+)x/;

/**
 * Picks a prefix no namespace uses and claims it by creating its first namespace,
 * `<prefix>-<firstRole>` (see claimNamespacePrefix in src/trace/netns.ts). Returns the prefix.
 */
export function claimTestbedPrefix(firstRole: string): Promise<string> {
  return claimNamespacePrefix(TESTBED_NAMESPACE_PREFIX, firstRole);
}

/** The pid that created a testbed namespace, or undefined for other namespaces. */
export function creatorPid(ns: string): number | undefined {
  const match = PREFIX_PATTERN.exec(ns);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

function isAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Deletes testbed namespaces (`kpxt…`) whose creating process is gone: leftovers of crashed
 * runs. Processes still inside them are killed first. Returns the names deleted.
 */
export async function reapStaleTestbeds(): Promise<string[]> {
  const stale = (await listNetns()).filter((ns) => {
    const pid = creatorPid(ns);
    return pid !== undefined && pid !== Deno.pid && !isAlive(pid);
  });
  const failures: string[] = [];
  for (const ns of stale) {
    await killProcessesIn(ns);
    const result = await runCommand(["ip", "netns", "delete", ns]);
    if (result.code !== 0) failures.push(`${ns}: ${result.stderr.trim()}`);
  }
  if (failures.length > 0) {
    throw new Error(`Cannot delete stale testbed namespaces: ${failures.join("; ")}`);
  }
  return stale;
}
