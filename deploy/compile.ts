/**
 * `deno task compile`: dist/kpx, one executable made by `deno compile` from
 * the same bundle the package runs (deploy/bundle.ts), with the shipped
 * permissions and V8 flags baked in (deploy/permissions.ts). Nothing is
 * fetched when it runs.
 *
 * `deno compile` needs `denort`, Deno's runtime without the tooling, which it
 * downloads from Deno's own server (not the npm registry). Where that server
 * is out of reach, point DENORT_BIN at a denort binary of the same Deno
 * version (denort-x86_64-unknown-linux-gnu.zip from a Deno release), or use
 * `deno task package`, which needs no denort. This task fails with that
 * advice rather than pretending.
 */
import { BuildError, bundleKpx } from "./bundle.ts";
import { PERMISSION_FLAGS, V8_FLAGS } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname;

function advice(): string {
  return `set DENORT_BIN to a denort binary of Deno ${Deno.version.deno} (from denort-x86_64-unknown-linux-gnu.zip of that Deno release), or build the single-file package without denort: deno task package`;
}

export async function compileKpx(out = `${ROOT}dist/kpx`): Promise<string> {
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(denort);
    } catch (e) {
      throw new BuildError(`Cannot compile kpx: DENORT_BIN=${denort} does not exist`, {
        cause: e,
      });
    }
    if (!info.isFile) {
      throw new BuildError(`Cannot compile kpx: DENORT_BIN=${denort} is not a file`);
    }
  }
  const dir = out.slice(0, out.lastIndexOf("/")) || ".";
  await Deno.mkdir(dir, { recursive: true });
  const stage = await Deno.makeTempDir({ dir, prefix: ".compile-" });
  try {
    await bundleKpx(`${stage}/kpx.js`);
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "--no-config",
        "--no-remote",
        "--no-npm",
        ...PERMISSION_FLAGS,
        `--v8-flags=${V8_FLAGS}`,
        "--output",
        out,
        `${stage}/kpx.js`,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      const err = new TextDecoder().decode(r.stderr).trim();
      // Without DENORT_BIN deno compile downloads denort from dl.deno.land.
      if (!denort && /denort|dl\.deno\.land/.test(err)) {
        throw new BuildError(
          `Cannot compile kpx: deno compile could not get its denort runtime from Deno's download server (${
            err.split("\n").find((l) => /error sending request|dns|connect/i.test(l))?.replace(
              /^\s*\d+:\s*/,
              "",
            ) ??
              "download failed"
          }); ${advice()}`,
        );
      }
      throw new BuildError(`Cannot compile kpx: deno compile exited with status ${r.code}: ${err}`);
    }
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  return out;
}

if (import.meta.main) {
  try {
    const out = await compileKpx();
    const size = (await Deno.stat(out)).size;
    console.log(`${out}: ${(size / 1e6).toFixed(1)} MB`);
  } catch (e) {
    console.error(e instanceof BuildError ? e.message : e);
    Deno.exit(1);
  }
}
