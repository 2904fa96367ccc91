/**
 * Namespace names. Every testbed gets a prefix `kpxt<pid>x<counter>` so testbeds in parallel
 * processes (or in one process) never collide, and leftovers name the process that made them.
 *
 * Interface names never carry the prefix: each interface lives inside one of our namespaces
 * (created there directly, never in the root namespace), so short fixed names such as `eth0`
 * or `veth-0a` cannot clash and stay within the kernel's 15-character limit.
 * @module
 */

import { describe, runChecked, runCommand } from "./_testbed_exec.ts";

export const TESTBED_NAMESPACE_PREFIX = "kpxt";
// kpxt<pid>x<counter>-<role>; the prerequisite check uses kpxt<pid>x-prereq.
const PREFIX_PATTERN = /^kpxt(\d+)x/;

// A random start keeps isolates of one process (deno test --parallel runs test files in one
// process, each with its own copy of this module) from trying the same names first.
let counter = Math.floor(Math.random() * 1000);
/** Names of all network namespaces (`ip netns list`, ids stripped). */
export async function listNetns(): Promise<string[]> {
  const result = await runChecked("list network namespaces", ["ip", "netns", "list"]);
  return result.stdout.split("\n").map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((name) => name !== "");
}

/**
 * Picks a prefix no namespace uses and claims it by creating its first namespace,
 * `<prefix>-<firstRole>`: `ip netns add` fails if that exists, so two claimants can never
 * both win (a dead process may also have had our pid). Returns the prefix.
 */
export async function claimTestbedPrefix(firstRole: string): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const existing = await listNetns();
    const prefix = `${TESTBED_NAMESPACE_PREFIX}${Deno.pid}x${counter++}`;
    if (existing.some((name) => name.startsWith(`${prefix}-`))) continue;
    const result = await runCommand(["ip", "netns", "add", `${prefix}-${firstRole}`]);
    if (result.code === 0) return prefix;
    if (!result.stderr.includes("File exists")) {
      throw new Error(`Cannot create namespace ${prefix}-${firstRole}: ${result.stderr.trim()}`);
    }
  }
  throw new Error("Cannot find a free testbed namespace prefix after 20 attempts");
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

/** SIGKILLs every process whose network namespace is `ns` (`ip netns pids`). */
export async function killProcessesIn(ns: string): Promise<void> {
  const result = await runCommand(["ip", "netns", "pids", ns]);
  if (result.code !== 0) return; // The namespace is already gone.
  for (const pid of result.stdout.split(/\s+/).filter((p) => p !== "").map(Number)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch (error) {
      // Exited between listing and killing.
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot kill process ${pid} in ${ns}: ${describe(error)}`, {
          cause: error,
        });
      }
    }
  }
}
