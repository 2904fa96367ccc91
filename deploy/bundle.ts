/**
 * kpx as one JavaScript file: `deno bundle` (esbuild) of src/main.ts with its
 * npm dependencies inlined, so the shipped program resolves nothing at run
 * time (no npm cache, no network, no node_modules). Both shipped artifacts
 * run this same file: `deno task package` next to a Deno runtime, `deno task
 * compile` inside a denort executable.
 *
 * The planner is already inside: src/planner imports the generated
 * wasm/build/planner_wasm.ts, and `kpx version` the generated build_info.ts,
 * which is why the tasks run `deno task build` first.
 */

export class BuildError extends Error {
  override name = "BuildError";
}

export interface BundleResult {
  path: string;
  bytes: number;
}

const ROOT = new URL("..", import.meta.url).pathname;

/** Bundles src/main.ts into `out` (a path). */
export async function bundleKpx(out: string): Promise<BundleResult> {
  for (const generated of ["wasm/build/planner_wasm.ts", "wasm/build/build_info.ts"]) {
    try {
      await Deno.stat(`${ROOT}${generated}`);
    } catch (e) {
      throw new BuildError(
        `Cannot bundle kpx: ${generated} is missing (run \`deno task build\` first)`,
        { cause: e },
      );
    }
  }
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--platform=deno",
      // Measured with `kpx version`: 2.3 MB instead of 7 MB, 60 ms instead
      // of 90 ms warm, 58 MB instead of 76 MB RSS. Identifiers get renamed:
      // kpx's errors set `name` explicitly; only some of client-node's OIDC
      // errors (oauth4webapi) take theirs from constructor.name. Not
      // --keep-names: with it, Deno 2.9.6's bundle fails at start ("Dynamic
      // require of node:process is not supported").
      "--minify",
      "--output",
      out,
      "src/main.ts",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new BuildError(
      `Cannot bundle kpx: deno bundle exited with status ${r.code}: ${
        new TextDecoder().decode(r.stderr).trim()
      }`,
    );
  }
  const text = await Deno.readTextFile(out);
  // The bundle must not load anything at run time: no npm:/jsr:/http(s):
  // specifiers may survive bundling (node: built-ins are part of Deno).
  const leftover = /\bfrom\s*["'](npm:|jsr:|https?:)[^"']*["']|\bimport\(\s*["'](npm:|jsr:|https?:)/
    .exec(text);
  if (leftover) {
    throw new BuildError(
      `Cannot bundle kpx: the bundle still imports ${
        leftover[0]
      }, which would be fetched at run time`,
    );
  }
  return { path: out, bytes: text.length };
}
