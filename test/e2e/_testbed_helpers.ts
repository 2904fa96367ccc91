/**
 * How the two helper programs (echo server, probe client) are started inside a namespace.
 *
 * By default: the Deno running us, on the .ts files beside this module. A compiled executable
 * (e.g. `kpx trace`) has no .ts files on disk; it can point these at hidden subcommands of its
 * own that call `serveEcho()` / `runProbes()`.
 * @module
 */

function besideThisModule(file: string): string {
  return decodeURIComponent(new URL(file, import.meta.url).pathname);
}

export interface HelperCommands {
  /** argv prefix; the testbed appends `--name N --tcp P,.. --udp P,..`. Needs network access. */
  echoServer: readonly string[];
  /** argv prefix; reads a ProbeBatch as JSON on stdin. Needs FFI (libc sockets). */
  probeClient: readonly string[];
}

// --no-config: the helpers import nothing but relative files and node: built-ins, so the
// project's deno.json (import map, lockfile) has nothing to offer them and cannot break them.
const DENO_RUN = ["run", "--no-config", "--no-prompt"];

let commands: HelperCommands | undefined;

export function helperCommands(): HelperCommands {
  commands ??= {
    echoServer: [Deno.execPath(), ...DENO_RUN, "--allow-net", besideThisModule("./echo_server.ts")],
    probeClient: [
      Deno.execPath(),
      ...DENO_RUN,
      "--allow-ffi",
      besideThisModule("./probe_client.ts"),
    ],
  };
  return commands;
}

/** Replaces how helpers are started (see module doc). */
export function setHelperCommands(replacement: Partial<HelperCommands>): void {
  commands = { ...helperCommands(), ...replacement };
}
