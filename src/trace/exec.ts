/**
 * Running commands, always with a deadline: on the host (only `ip netns add/del/list` and
 * `ip -n <our namespace>`), or inside one of our namespaces via `ip netns exec`. Shared by
 * `kpx trace` and the test testbed (test/e2e re-exports it).
 * @module
 */

export const DEFAULT_EXEC_TIMEOUT_MS = 10_000;

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  stdin?: string;
  /** Aborting kills the command (SIGKILL) and makes the call throw the abort reason. */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** Exit code; -1 when killed by a signal (including our timeout). */
  code: number;
  stdout: string;
  stderr: string;
  /** True when the deadline killed the command. */
  timedOut: boolean;
}

/** A command that failed where the caller needed it to succeed. */
export class CommandError extends Error {
  readonly result: ExecResult | undefined;
  constructor(message: string, result?: ExecResult, options?: ErrorOptions) {
    super(message, options);
    this.name = "CommandError";
    this.result = result;
  }
}

/** Environment for every child: never prompt or phone home from inside a test namespace. */
const CHILD_ENV = { DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", NO_COLOR: "1" };

/** Runs argv on the host with a deadline. Throws only when the program cannot start. */
export async function runCommand(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [program, ...args] = argv;
  if (program === undefined) throw new TypeError("Cannot run a command: argv is empty");
  const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  options.signal?.throwIfAborted();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      env: CHILD_ENV,
    }).spawn();
  } catch (error) {
    throw new CommandError(`Cannot run ${program}: ${describe(error)}`, undefined, {
      cause: error,
    });
  }
  let timedOut = false;
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch (error) {
      // Raced with a normal exit: the process is already gone, which is what we wanted.
      if (!(error instanceof TypeError)) throw error;
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  options.signal?.addEventListener("abort", kill);
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      // A program that exits without reading its stdin makes this write fail; its exit code
      // (collected below) then tells the caller what happened.
      await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
      await writer.close().catch(() => {});
    }
    const output = await child.output();
    options.signal?.throwIfAborted();
    return {
      code: output.signal === null ? output.code : -1,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", kill);
  }
}

/** Runs argv inside network namespace `ns` (via `ip netns exec`). */
export function execInNetns(
  ns: string,
  argv: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  return runCommand(["ip", "netns", "exec", ns, ...argv], options);
}

/** Like runCommand, but throws CommandError "Cannot <action>: <stderr>" unless it exits 0. */
export async function runChecked(
  action: string,
  argv: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const result = await runCommand(argv, options);
  if (result.code !== 0) {
    const reason = result.timedOut
      ? `timed out after ${options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS} ms`
      : (result.stderr.trim() || result.stdout.trim() || `exit code ${result.code}`);
    throw new CommandError(`Cannot ${action}: ${reason}`, result);
  }
  return result;
}

/**
 * Runs several `ip` commands in namespace `ns` in one process (`ip -n NS -batch -`).
 * Each line is an ip command without the leading "ip", e.g. "link set eth0 up".
 */
export async function ipBatch(action: string, ns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await runChecked(action, ["ip", "-n", ns, "-batch", "-"], { stdin: lines.join("\n") + "\n" });
}

/**
 * Sets sysctls inside `ns`, e.g. {"net.ipv4.ip_forward": 1}. Only `net.*` keys: those are per
 * namespace, while any other key (kernel.*, vm.*) would change the whole host.
 */
export async function setSysctls(
  ns: string,
  values: Record<string, string | number>,
): Promise<void> {
  const global = Object.keys(values).filter((key) => !key.startsWith("net."));
  if (global.length > 0) {
    throw new RangeError(
      `Cannot set ${global.join(", ")} in ${ns}: only net.* sysctls are per namespace`,
    );
  }
  const pairs = Object.entries(values).map(([key, value]) => `${key}=${value}`);
  if (pairs.length === 0) return;
  await runChecked(`set sysctls ${pairs.join(" ")} in ${ns}`, [
    "ip",
    "netns",
    "exec",
    ns,
    "sysctl",
    "-q",
    "-w",
    ...pairs,
  ]);
}

/** Reads one sysctl inside `ns`. */
export async function readSysctl(ns: string, key: string): Promise<string> {
  const result = await runChecked(`read sysctl ${key} in ${ns}`, [
    "ip",
    "netns",
    "exec",
    ns,
    "sysctl",
    "-n",
    key,
  ]);
  return result.stdout.trim();
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
