/**
 * How kpx starts itself to run a hidden subcommand (`kpx __probe`) in a child process inside a
 * namespace. kpx runs three ways, and each needs a different argv:
 * - a `deno compile` executable (Deno.build.standalone): the executable itself; it has no
 *   .ts files on disk and its permissions are baked in;
 * - from source (this module is a .ts file): `deno run` on src/main.ts, with the project's
 *   deno.json (its import map) when there is one;
 * - the packaged bundle (this module is part of one .js file): `deno run` on that file, with
 *   the child's own permissions (the probe client needs FFI, which kpx itself does not).
 * @module
 */

/** Permissions of a bundled child: FFI for libc sockets, env and read for the bundle's start-up. */
const BUNDLE_CHILD_FLAGS = [
  "--no-config",
  "--no-lock",
  "--no-remote",
  "--no-npm",
  "--no-prompt",
  "--allow-ffi",
  "--allow-env",
  "--allow-read",
];

export type KpxRunMode = "standalone" | "source" | "bundle";

/** How this kpx is running (see the module doc). */
export function kpxRunMode(moduleUrl: string = import.meta.url): KpxRunMode {
  if (Deno.build.standalone) return "standalone";
  return new URL(moduleUrl).pathname.endsWith(".ts") ? "source" : "bundle";
}

/** argv that runs `kpx <subcommand> [args]` in a new process. */
export function selfCommand(subcommand: string, args: readonly string[] = []): string[] {
  const mode = kpxRunMode();
  if (mode === "standalone") return [Deno.execPath(), subcommand, ...args];
  if (mode === "bundle") {
    const bundle = decodeURIComponent(new URL(import.meta.url).pathname);
    return [Deno.execPath(), "run", ...BUNDLE_CHILD_FLAGS, bundle, subcommand, ...args];
  }
  const main = decodeURIComponent(new URL("../main.ts", import.meta.url).pathname);
  const config = findDenoConfig(new URL("../", import.meta.url));
  return [
    Deno.execPath(),
    "run",
    "--allow-all",
    ...(config === undefined ? ["--no-config"] : ["--config", config]),
    main,
    subcommand,
    ...args,
  ];
}

/** The nearest deno.json(c) at or above `dir`, as a path. */
function findDenoConfig(dir: URL): string | undefined {
  for (let current = dir;; current = new URL("../", current)) {
    for (const name of ["deno.json", "deno.jsonc"]) {
      const path = decodeURIComponent(new URL(name, current).pathname);
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    if (current.pathname === "/") return undefined;
  }
}
