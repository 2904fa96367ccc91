/**
 * Daemon benchmarks (issue 4): `kpx run` with 10k services x 10 endpoints,
 * as shipped (the single-file package, built here) and from source (`deno
 * task kpx`, for reference: it also compiles TypeScript and loads the module
 * graph), fed two ways, each in a throwaway network namespace of its own:
 * - a manifest directory (air-gapped nodes): a changed file is read after
 *   a 100 ms debounce, which the latency figure leaves out;
 * - the Kubernetes API (the test API server, bench/_api_bench_server.ts, in
 *   the same namespace as kpx): list and watch, as on a cluster node.
 * For each: start-up to the first applied sync; change-to-kernel latency of
 * one EndpointSlice update with 10k services loaded (target p50 under 50 ms
 * beyond the minSyncPeriod wait; minSyncPeriod is 0 here); peak RSS (target
 * under 150 MB; for the package). Both run with the shipped V8 flags.
 */
import { buildPackage } from "../deploy/package.ts";
import { type BenchReport, median } from "./report.ts";
import { withNamespace } from "./netns.ts";
import { KpxProcess } from "../test/e2e/kpx_process.ts";
import { BENCH_ENDPOINTS, benchNode, benchService, benchSlice } from "./_bench_cluster.ts";

const SERVICES = 10000;
const PER_FILE = 250;
const SERVER = decodeURIComponent(new URL("./_api_bench_server.ts", import.meta.url).pathname);
const CONFIG = decodeURIComponent(new URL("../deno.json", import.meta.url).pathname);

const DAEMON_FLAGS = [
  "--hostname-override=node-a",
  "--cluster-cidr=10.64.0.0/10",
  "--min-sync-period=0s",
  "--sync-period=10m",
  "--conntrack-max-per-core=0",
  "--healthz-bind-address=",
  "--metrics-bind-address=127.0.0.1:10249",
  "--v=2",
];

function vmHWM(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Which kpx runs: the package, or src/main.ts (executable absent). */
interface Build {
  label: string;
  executable?: { path: string; env: Record<string, string> };
  /** Its figures carry the targets. */
  targets: boolean;
}

/** How a benchmark feeds kpx, and changes one service's slice. */
interface Feed {
  label: string;
  /** Extra text for the latency figure's name. */
  latencyNote: string;
  /** Subtracted from each latency (the file debounce). */
  fixedDelayMs: number;
  args: string[];
  change(version: number): Promise<void>;
}

async function measure(
  report: BenchReport,
  ns: string,
  build: Build,
  feed: Feed,
  changes: number,
): Promise<void> {
  const kpx = new KpxProcess({
    netns: ns,
    args: [...feed.args, ...DAEMON_FLAGS],
    ...(build.executable ? { executable: build.executable } : {}),
  });
  const what = `${feed.label}, ${build.label}`;
  try {
    const t0 = performance.now();
    await kpx.nextSync(180_000, 0);
    report.add({
      suite: "daemon",
      name: `start-up to first applied sync, ${
        SERVICES / 1000
      }k services x ${BENCH_ENDPOINTS} endpoints (${what})`,
      unit: "s",
      values: [(performance.now() - t0) / 1000],
    });
    const latencies: number[] = [];
    for (let v = 1; v <= changes; v++) {
      const mark = kpx.lines.length;
      const t = performance.now();
      await feed.change(v);
      const synced = await kpx.nextSync(10_000, mark);
      if (synced.fields["full"] !== "false") {
        throw new Error(`Cannot measure a delta: sync ${v} was full`);
      }
      latencies.push(performance.now() - t - feed.fixedDelayMs);
    }
    report.add({
      suite: "daemon",
      name: `EndpointSlice change to rules in the kernel, ${
        SERVICES / 1000
      }k services loaded (${feed.latencyNote}; ${build.label})`,
      unit: "ms",
      values: latencies,
      ...(build.targets ? { target: { max: 50, source: "issue 4" } } : {}),
      note: `raw median ${median(latencies.map((l) => l + feed.fixedDelayMs)).toFixed(0)} ms`,
    });
    report.add({
      suite: "daemon",
      name: `peak RSS of kpx run, ${SERVICES / 1000}k services / ${
        SERVICES * BENCH_ENDPOINTS / 1000
      }k endpoints (${what})`,
      unit: "MB",
      values: [vmHWM(kpx.pid)],
      ...(build.targets ? { target: { max: 150, source: "issue 4" } } : {}),
    });
  } finally {
    await kpx.stop("SIGTERM");
  }
}

async function manifestsBench(report: BenchReport, build: Build, changes: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kpx-bench-" });
  const list = (items: unknown[]) => JSON.stringify({ apiVersion: "v1", kind: "List", items });
  try {
    await Deno.writeTextFile(`${dir}/node.json`, JSON.stringify(benchNode()));
    for (let f = 0; f < SERVICES / PER_FILE; f++) {
      const items = [];
      for (let i = f * PER_FILE; i < (f + 1) * PER_FILE; i++) {
        items.push(benchService(i), benchSlice(i, 0));
      }
      await Deno.writeTextFile(`${dir}/services-${f}.json`, list(items));
    }
    // The service that changes lives in its own small file.
    const changing = SERVICES;
    await Deno.writeTextFile(
      `${dir}/changing.json`,
      list([benchService(changing), benchSlice(changing, 0)]),
    );
    await withNamespace(async (ns) => {
      await new Deno.Command("ip", { args: ["netns", "exec", ns, "ip", "link", "set", "lo", "up"] })
        .output();
      await measure(report, ns, build, {
        label: "manifests",
        latencyNote: "file write to applied, minus the 100 ms file debounce",
        fixedDelayMs: 100,
        args: ["--manifests", dir],
        change: async (v) => {
          await Deno.writeTextFile(
            `${dir}/changing.tmp`,
            list([benchService(changing), benchSlice(changing, v)]),
          );
          await Deno.rename(`${dir}/changing.tmp`, `${dir}/changing.json`);
        },
      }, changes);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Lines from a child's stdout, one at a time. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buf = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  async next(what: string): Promise<string> {
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`Cannot read ${what}: the API server exited`);
      this.#buf += value;
    }
  }
}

async function apiBench(report: BenchReport, build: Build, changes: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kpx-bench-api-" });
  try {
    await withNamespace(async (ns) => {
      await new Deno.Command("ip", { args: ["netns", "exec", ns, "ip", "link", "set", "lo", "up"] })
        .output();
      const server = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          Deno.execPath(),
          "run",
          "--allow-all",
          `--config=${CONFIG}`,
          SERVER,
          String(SERVICES),
          dir,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const input = server.stdin.getWriter();
      const lines = new Lines(server.stdout);
      try {
        const ready = await lines.next("the API server's start");
        const kubeconfig = /^READY (.+)$/.exec(ready)?.[1];
        if (!kubeconfig) throw new Error(`Cannot start the API server: it said ${ready}`);
        await measure(report, ns, build, {
          label: "API",
          latencyNote: "API write to applied",
          fixedDelayMs: 0,
          args: [`--kubeconfig=${kubeconfig}`],
          change: async (v) => {
            await input.write(new TextEncoder().encode(`slice 0 ${v}\n`));
            const ok = await lines.next("the API server's answer");
            if (ok !== "OK") throw new Error(`Cannot change a slice: the API server said ${ok}`);
          },
        }, changes);
      } finally {
        await input.close().catch(() => {/* already gone: its status says why */});
        const status = await server.status;
        if (!status.success) throw new Error(`The API server exited with ${status.code}`);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export async function runBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const changes = opts.quick ? 10 : 30;
  const dir = await Deno.makeTempDir({ prefix: "kpx-bench-pkg-" });
  try {
    const built = await buildPackage({ outDir: dir, log: () => {} });
    const env = { KPX_CACHE_DIR: `${dir}/cache` };
    // Unpacked once before: start-up figures are of a node's every later start.
    const first = await new Deno.Command(built.path, { args: ["version"], env }).output();
    if (!first.success) throw new Error(`Cannot run the package: ${built.path} version failed`);
    const builds: Build[] = [
      { label: "package", executable: { path: built.path, env }, targets: true },
      { label: "from source", targets: false },
    ];
    for (const build of builds) {
      await manifestsBench(report, build, changes);
      await apiBench(report, build, changes);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
