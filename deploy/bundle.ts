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

import { ALLOWED_ENV } from "./permissions.ts";

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
  const env = envReads(text);
  const unlisted = [...env.names].filter((n) => !(ALLOWED_ENV as readonly string[]).includes(n));
  if (unlisted.length > 0 || env.dynamic.length > 0) {
    throw new BuildError(
      `Cannot bundle kpx: the bundle reads environment variables the shipped permissions do not allow (Deno would throw at run time): ${
        [
          ...unlisted.sort(),
          ...env.dynamic.map((d) => `a computed or enumerated read: ${JSON.stringify(d)}`),
        ].join(", ")
      }; list them in ALLOWED_ENV (deploy/permissions.ts) or avoid the read`,
    );
  }
  return { path: out, bytes: text.length };
}

/**
 * The environment variables a bundle reads, found in its text: `X.env.NAME`
 * (process.env and minified aliases of it) and `Deno.env.get("NAME")`. Any
 * other use of an `env` object (computed names, enumeration, passing it on)
 * is `dynamic`: which variables it reads cannot be known, so it cannot run
 * under a list.
 */
export function envReads(code: string): { names: Set<string>; dynamic: string[] } {
  const names = new Set<string>();
  const dynamic: string[] = [];
  for (const m of code.matchAll(/([\w$]+)\.env(?![\w$])/g)) {
    const after = code.slice(m.index + m[0].length, m.index + m[0].length + 80);
    const name = m[1] === "Deno"
      ? /^\.(?:get|has)\(\s*(["'`])([A-Za-z_]\w*)\1\s*\)/.exec(after)?.[2]
      : /^\.([A-Za-z_][\w$]*)/.exec(after)?.[1];
    if (name !== undefined) names.add(name);
    else dynamic.push(code.slice(m.index, m.index + m[0].length + 30));
  }
  return { names, dynamic };
}
