/**
 * The single-file package (deno task package): its size, and how long kpx
 * takes to start from it. Cold: the first run of a version, which checks the
 * payload's SHA-256 and unpacks it; warm: every later run. Also the time
 * from starting `kpx run` to its first applied sync (in a network namespace
 * of its own, following a manifest directory).
 *
 * Add to bench/main.ts:
 *   import { packageBench } from "./package_bench.ts";
 *   ... SUITES: { ..., package: packageBench }
 * or run alone: deno run -A bench/package_bench.ts [--quick]
 */
import { buildPackage } from "../deploy/package.ts";
import { BenchReport, timeRuns } from "./report.ts";

const FIXTURE = new URL("../test/fixtures/plan/clusterip/manifests.yaml", import.meta.url).pathname;

async function kpx(pkg: string, args: string[], env: Record<string, string>): Promise<void> {
  const r = await new Deno.Command(pkg, { args, env, stdout: "null", stderr: "piped" }).output();
  if (!r.success) {
    throw new Error(
      `Cannot run ${pkg} ${args.join(" ")}: exit status ${r.code}: ${
        new TextDecoder().decode(r.stderr).trim()
      }`,
    );
  }
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) n += await dirBytes(p);
    else if (e.isFile) n += (await Deno.stat(p)).size;
  }
  return n;
}

/**
 * Milliseconds from starting `<pkg> run` to its first applied sync, in a new
 * network namespace (lo only), following a directory with one manifest file.
 * `pkg` may be the package or any kpx executable.
 */
export async function startToFirstSync(
  pkg: string,
  opts: { cacheDir: string; manifests: string },
): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command("unshare", {
    args: [
      "--net",
      "sh",
      "-c",
      'ip link set lo up && exec "$0" "$@"',
      pkg,
      "run",
      "--manifests",
      opts.manifests,
      // The conntrack table size is global: not a benchmark's to change.
      "--conntrack-max-per-core=0",
      "--v=2",
    ],
    env: { KPX_CACHE_DIR: opts.cacheDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let buf = "";
  let ms: number | undefined;
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      if (/\bmsg=Synced\b/.test(buf)) {
        ms = performance.now() - started;
        child.kill("SIGTERM");
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    await child.status;
  }
  if (ms === undefined) {
    throw new Error(`Cannot measure the start-up to the first sync: kpx never synced:\n${buf}`);
  }
  return ms;
}

export async function packageBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kpx-bench-package-" });
  try {
    const built = await buildPackage({ outDir: `${dir}/dist`, log: () => {} });
    report.add({
      suite: "package",
      name: "single-file package size",
      unit: "MB",
      values: [built.bytes / 1e6],
      note: `deno ${built.denoVersion} + bundled kpx, gzip`,
    });

    const cold = await timeRuns(opts.quick ? 2 : 5, async () => {
      const cache = await Deno.makeTempDir({ dir, prefix: "cache-" });
      await kpx(built.path, ["version"], { KPX_CACHE_DIR: cache });
    });
    report.add({
      suite: "package",
      name: "kpx version, first run (checksum + unpack)",
      unit: "ms",
      values: cold,
    });

    const cache = `${dir}/warm`;
    await kpx(built.path, ["version"], { KPX_CACHE_DIR: cache });
    report.add({
      suite: "package",
      name: "unpacked size in the cache",
      unit: "MB",
      values: [await dirBytes(cache) / 1e6],
    });
    // The first warm run fills Deno's code cache; measure the ones after.
    await kpx(built.path, ["version"], { KPX_CACHE_DIR: cache });
    const warm = await timeRuns(
      opts.quick ? 5 : 20,
      () => kpx(built.path, ["version"], { KPX_CACHE_DIR: cache }),
    );
    report.add({ suite: "package", name: "kpx version, later runs", unit: "ms", values: warm });
    const verified = await timeRuns(
      opts.quick ? 3 : 10,
      () => kpx(built.path, ["version"], { KPX_CACHE_DIR: cache, KPX_VERIFY: "1" }),
    );
    report.add({
      suite: "package",
      name: "kpx version, later runs with KPX_VERIFY=1",
      unit: "ms",
      values: verified,
    });

    const manifests = `${dir}/manifests`;
    await Deno.mkdir(manifests);
    await Deno.copyFile(FIXTURE, `${manifests}/clusterip.yaml`);
    const sync: number[] = [];
    for (let i = 0; i < (opts.quick ? 2 : 5); i++) {
      sync.push(await startToFirstSync(built.path, { cacheDir: cache, manifests }));
    }
    report.add({
      suite: "package",
      name: "kpx run: start to first applied sync (manifests, 1 service)",
      unit: "ms",
      values: sync,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  await packageBench(new BenchReport(), { quick: Deno.args.includes("--quick") });
}
