/**
 * `deno task package`: kpx as one self-contained executable for nodes with
 * neither Deno nor Node.js, built without `denort` (which `deno compile`
 * needs and only Deno's download server has).
 *
 * The file is deploy/launcher.sh (POSIX sh) followed by a gzip'd tar of
 * - deno: the Deno runtime, the binary of the npm package
 *   @deno/linux-<arch>-glibc at the version of the Deno running this build
 *   (the one kpx is tested with), taken from the npm registry once, checked
 *   against the registry's sha512 integrity, cached in .cache/deno-runtime/;
 * - kpx.js: kpx bundled with its npm dependencies (deploy/bundle.ts).
 * The launcher checks the payload's SHA-256 and unpacks it into a versioned
 * cache on first run (see deploy/launcher.sh and docs/install.md).
 *
 * Usage: deno task package [--arch x86_64|aarch64]
 * Environment: KPX_DENO_BIN=/path/to/deno uses that runtime instead of the
 * registry's (offline builds; its version must match); NPM_CONFIG_REGISTRY
 * names another npm registry.
 */
import denoJson from "../deno.json" with { type: "json" };
import { BUILD_INFO } from "../wasm/build/build_info.ts";
import { BuildError, bundleKpx } from "./bundle.ts";
import { PERMISSION_FLAGS, V8_FLAGS } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** uname -m -> the npm package holding Deno for it. */
const RUNTIME_PACKAGES: Record<string, string> = {
  x86_64: "@deno/linux-x64-glibc",
  aarch64: "@deno/linux-arm64-glibc",
};

export interface PackageOptions {
  /** uname -m of the target; default x86_64. */
  arch?: string;
  /** Where the artifact goes; default dist/. */
  outDir?: string;
  /** Progress lines; default: stderr. */
  log?: (line: string) => void;
}

export interface PackageResult {
  path: string;
  bytes: number;
  payloadSha256: string;
  denoVersion: string;
  commit: string;
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function run(cmd: string, args: string[], what: string): Promise<Uint8Array> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    throw new BuildError(
      `Cannot ${what}: ${cmd} exited with status ${r.code}: ${
        new TextDecoder().decode(r.stderr).trim()
      }`,
    );
  }
  return r.stdout;
}

/** The Deno runtime to embed: KPX_DENO_BIN, the cache, or the npm registry. */
async function denoRuntime(
  version: string,
  arch: string,
  log: (s: string) => void,
): Promise<string> {
  const pkg = RUNTIME_PACKAGES[arch];
  if (!pkg) {
    throw new BuildError(
      `Cannot package kpx for ${arch}: no Deno runtime package known for it (known: ${
        Object.keys(RUNTIME_PACKAGES).join(", ")
      })`,
    );
  }
  const local = Deno.env.get("KPX_DENO_BIN");
  if (local) {
    // Only checkable when it runs here; a foreign-arch binary is taken as is.
    if (arch === Deno.build.arch) {
      const out = new TextDecoder().decode(await run(local, ["--version"], "run KPX_DENO_BIN"));
      if (!out.startsWith(`deno ${version} `)) {
        throw new BuildError(
          `Cannot use KPX_DENO_BIN=${local}: it is ${
            out.split("\n")[0]
          }, kpx is built and tested with deno ${version}`,
        );
      }
    }
    return local;
  }
  const dir = `${ROOT}.cache/deno-runtime/${pkg.replace("/", "+")}-${version}`;
  const bin = `${dir}/deno`;
  if (await exists(bin)) return bin;

  const registry = (Deno.env.get("NPM_CONFIG_REGISTRY") ?? "https://registry.npmjs.org")
    .replace(/\/+$/, "");
  const metaUrl = `${registry}/${pkg.replace("/", "%2f")}/${version}`;
  log(`Fetching the Deno ${version} runtime: ${pkg}@${version} from ${registry}`);
  let meta: { dist?: { tarball?: string; integrity?: string } };
  let tarball: Uint8Array<ArrayBuffer>;
  try {
    const res = await fetch(metaUrl);
    if (!res.ok) throw new Error(`${metaUrl}: HTTP ${res.status}`);
    meta = await res.json();
    const url = meta.dist?.tarball;
    if (!url) throw new Error(`${metaUrl} names no tarball`);
    const tres = await fetch(url);
    if (!tres.ok) throw new Error(`${url}: HTTP ${tres.status}`);
    tarball = new Uint8Array(await tres.arrayBuffer());
  } catch (e) {
    throw new BuildError(
      `Cannot fetch the Deno runtime ${pkg}@${version} from the npm registry (${
        (e as Error).message
      }); offline, set KPX_DENO_BIN to a deno ${version} binary, e.g. KPX_DENO_BIN=${Deno.execPath()}`,
      { cause: e },
    );
  }
  // npm's integrity field: "sha512-<base64>"; the registry's word for what the tarball is.
  const want = meta.dist?.integrity ?? "";
  const got = "sha512-" +
    btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.digest("SHA-512", tarball))));
  if (!want.startsWith("sha512-") || want !== got) {
    throw new BuildError(
      `Cannot use ${pkg}@${version}: its tarball's integrity is ${got}, the registry says ${
        want || "nothing"
      }`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir, prefix: ".fetch-" });
  try {
    await Deno.writeFile(`${tmp}/pkg.tgz`, tarball);
    await run("tar", ["-xzf", `${tmp}/pkg.tgz`, "-C", tmp, "package/deno"], `unpack ${pkg}`);
    await Deno.chmod(`${tmp}/package/deno`, 0o755);
    await Deno.rename(`${tmp}/package/deno`, bin);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  return bin;
}

function renderLauncher(template: string, values: Record<string, string>): string {
  return template.replace(/@([A-Z0-9_]+)@/g, (m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new BuildError(`Cannot render the launcher: no value for ${m}`);
    return v;
  });
}

/** Builds dist/kpx-<version>-linux-<arch>; `deno task build` must have run. */
export async function buildPackage(opts: PackageOptions = {}): Promise<PackageResult> {
  const arch = opts.arch ?? "x86_64";
  const outDir = opts.outDir ?? `${ROOT}dist`;
  const log = opts.log ?? ((s: string) => console.error(s));
  const version = denoJson.version;
  const denoVersion = Deno.version.deno;
  await Deno.mkdir(outDir, { recursive: true });
  const stage = await Deno.makeTempDir({ dir: outDir, prefix: ".stage-" });
  try {
    const payload = `${stage}/payload`;
    await Deno.mkdir(payload);
    const bundle = await bundleKpx(`${payload}/kpx.js`);
    log(`Bundled kpx: ${(bundle.bytes / 1e6).toFixed(1)} MB of JavaScript`);
    await Deno.copyFile(await denoRuntime(denoVersion, arch, log), `${payload}/deno`);
    await Deno.chmod(`${payload}/deno`, 0o755);

    // Reproducible: sorted names, no owners, fixed times, no gzip timestamp.
    // gzip rather than xz or zstd: only gzip is sure to be on a minimal node.
    await run("tar", [
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--mtime=@0",
      "--use-compress-program=gzip -9n",
      "-C",
      payload,
      "-cf",
      `${stage}/payload.tar.gz`,
      "deno",
      "kpx.js",
    ], "pack the payload");
    const tgz = await Deno.readFile(`${stage}/payload.tar.gz`);
    const sha = hex(await crypto.subtle.digest("SHA-256", tgz));

    const template = await Deno.readTextFile(`${ROOT}deploy/launcher.sh`);
    const values = (offset: number) => ({
      KPX_VERSION: version,
      KPX_COMMIT: BUILD_INFO.commit,
      DENO_VERSION: denoVersion,
      PAYLOAD_SHA256: sha,
      PAYLOAD_OFFSET: String(offset),
      PAYLOAD_SIZE: String(tgz.length),
      DENO_FLAGS: [...PERMISSION_FLAGS, `--v8-flags=${V8_FLAGS}`].join(" "),
    });
    // The header states the payload's offset, which depends on the header's
    // own length: iterate to the fixed point (two or three rounds).
    let offset = 1;
    let header = new Uint8Array();
    for (let round = 0;; round++) {
      header = new TextEncoder().encode(renderLauncher(template, values(offset)));
      if (header.length + 1 === offset) break;
      if (round > 8) throw new BuildError("Cannot render the launcher: its length does not settle");
      offset = header.length + 1;
    }
    const artifact = new Uint8Array(header.length + tgz.length);
    artifact.set(header);
    artifact.set(tgz, header.length);

    const name = `kpx-${version}-linux-${arch}`;
    const path = `${outDir}/${name}`;
    // Written beside, then renamed: a reader never sees half a package.
    await Deno.writeFile(`${stage}/${name}`, artifact, { mode: 0o755 });
    await Deno.chmod(`${stage}/${name}`, 0o755);
    await Deno.rename(`${stage}/${name}`, path);
    const whole = hex(await crypto.subtle.digest("SHA-256", artifact));
    await Deno.writeTextFile(`${path}.sha256`, `${whole}  ${name}\n`);
    return {
      path,
      bytes: artifact.length,
      payloadSha256: sha,
      denoVersion,
      commit: BUILD_INFO.commit,
    };
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--arch");
  const arch = i >= 0 ? Deno.args[i + 1] : undefined;
  try {
    const r = await buildPackage(arch ? { arch } : {});
    console.log(
      `${r.path}: ${
        (r.bytes / 1e6).toFixed(1)
      } MB, kpx ${denoJson.version} (commit ${r.commit}), deno ${r.denoVersion}, payload sha256 ${r.payloadSha256}`,
    );
  } catch (e) {
    console.error(e instanceof BuildError ? e.message : e);
    Deno.exit(1);
  }
}
