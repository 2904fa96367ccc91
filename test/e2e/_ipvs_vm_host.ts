/**
 * Host-side helpers for the IPVS VM harness: running commands, finding binaries and the
 * shared libraries they need. Nothing here changes the host's network configuration.
 *
 * @module
 */

/** Result of a finished host command. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const decoder = new TextDecoder();

/** Directories searched for host tools; sbin is included because root tools live there. */
const SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Runs a host command to completion and returns its output.
 * Throws when the command cannot be started; a non-zero exit is returned, not thrown.
 */
export async function runCommand(
  cmd: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): Promise<CommandResult> {
  try {
    const out = await new Deno.Command(cmd, {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      // apt and dpkg print localised messages otherwise; parsing wants the C locale.
      env: { LC_ALL: "C" },
    }).output();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch (error) {
    throw new Error(`Cannot run "${cmd}": the command could not be started`, { cause: error });
  }
}

/** Runs a host command and returns its stdout; a non-zero exit is an error naming stderr. */
export async function mustRun(
  cmd: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): Promise<string> {
  const res = await runCommand(cmd, args, options);
  if (res.code !== 0) {
    throw new Error(
      `Cannot run "${[cmd, ...args].join(" ")}": exit code ${res.code}: ${res.stderr.trim()}`,
    );
  }
  return res.stdout;
}

/** The absolute path of a host executable, or undefined when it is not installed. */
export async function findExecutable(name: string): Promise<string | undefined> {
  for (const dir of SEARCH_PATH) {
    const path = `${dir}/${name}`;
    try {
      const info = await Deno.stat(path);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return path;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return undefined;
}

/**
 * The shared libraries an executable loads, as absolute host paths (the dynamic loader
 * included). An empty list for a static executable.
 */
export async function sharedLibraries(executable: string): Promise<string[]> {
  const res = await runCommand("ldd", [executable]);
  // ldd exits 1 and says so for static executables (busybox-static).
  if (/not a dynamic executable|statically linked/.test(res.stdout + res.stderr)) return [];
  if (res.code !== 0) {
    throw new Error(`Cannot list the libraries of "${executable}": ldd: ${res.stderr.trim()}`);
  }
  const libs: string[] = [];
  for (const line of res.stdout.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
    else if (/=>\s*not found/.test(line)) {
      throw new Error(`Cannot list the libraries of "${executable}": ${line.trim()}`);
    }
  }
  return libs;
}

/** Whether a path exists (any kind). Other errors than NotFound propagate. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Hex SHA-256 of a string. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
