/**
 * Network namespace names and lifetimes, for `kpx trace` and the test testbed.
 *
 * Every user claims a prefix `<base><pid>x<counter>` (e.g. `kpxr1234x7`) so namespaces of
 * parallel processes (or of one process) never collide, and leftovers name the process that
 * made them. Interface names never carry the prefix: each interface lives inside one of the
 * namespaces (created there directly, never in the root namespace), so short fixed names such
 * as `eth0` cannot clash and stay within the kernel's 15-character limit.
 * @module
 */

import { describe, runChecked, runCommand } from "./exec.ts";

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
 * Picks a prefix `<base><pid>x<n>` no namespace uses and claims it by creating its first
 * namespace, `<prefix>-<firstRole>`: `ip netns add` fails if that exists, so two claimants can
 * never both win (a dead process may also have had our pid). Returns the prefix.
 */
export async function claimNamespacePrefix(base: string, firstRole: string): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const existing = await listNetns();
    const prefix = `${base}${Deno.pid}x${counter++}`;
    if (existing.some((name) => name.startsWith(`${prefix}-`))) continue;
    const result = await runCommand(["ip", "netns", "add", `${prefix}-${firstRole}`]);
    if (result.code === 0) return prefix;
    if (!result.stderr.includes("File exists")) {
      throw new Error(
        `Cannot create network namespace ${prefix}-${firstRole}: ${result.stderr.trim()}`,
      );
    }
  }
  throw new Error(`Cannot find a free ${base}… namespace prefix after 20 attempts`);
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

/** The pid in a `<base><pid>x…` namespace name, or undefined for other names. */
export function creatorPid(base: string, ns: string): number | undefined {
  if (!ns.startsWith(base)) return undefined;
  const match = /^(\d+)x/.exec(ns.slice(base.length));
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/**
 * Whether process `pid` is alive; undefined where Deno may not look (paths under /proc need
 * --allow-all, which kpx's shipped permissions do not grant).
 */
function processAlive(pid: number): boolean | undefined {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return undefined;
    }
    throw error;
  }
}

/**
 * Deletes `<base><pid>x…` namespaces whose creating process is gone (it was killed before it
 * could clean up). Returns the names deleted; none when liveness cannot be checked.
 */
export async function reapStaleNamespaces(base: string): Promise<string[]> {
  const stale = (await listNetns()).filter((ns) => {
    const pid = creatorPid(base, ns);
    return pid !== undefined && pid !== Deno.pid && processAlive(pid) === false;
  });
  await Promise.all(stale.map((ns) => deleteNetns(ns)));
  return stale;
}

/** Kills what runs inside `ns`, then deletes it. */
export async function deleteNetns(ns: string): Promise<void> {
  // A process left inside would keep the namespace alive.
  await killProcessesIn(ns);
  await runChecked(`delete network namespace ${ns}`, ["ip", "netns", "delete", ns]);
}
