/**
 * `deno task bench`: runs the benchmark suites and writes docs/benchmarks.md
 * (and .json). `--quick` for fewer runs and sizes; `--only a,b` to pick suites.
 * Kernel benchmarks run only inside namespaces they create.
 */
import { BenchReport, type Figure } from "./report.ts";
import { planBench } from "./plan_bench.ts";
import { applyBench } from "./apply_bench.ts";
import { runBench } from "./run_bench.ts";
import { packageBench } from "./package_bench.ts";
import { ipvsBench } from "./ipvs_bench.ts";
import { compareBench } from "./compare_bench.ts";

/** The figures of the last run, or none when there is no readable report yet. */
async function previousFigures(path: string): Promise<Figure[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw new Error(`Cannot read the last benchmark figures: ${path}`, { cause: error });
  }
  return JSON.parse(text) as Figure[];
}

type Suite = (report: BenchReport, opts: { quick: boolean }) => Promise<void>;

/** Suites in run order. Each lives in its own bench/<name>_bench.ts. */
const SUITES: Record<string, Suite> = {
  planner: planBench,
  apply: applyBench,
  daemon: runBench,
  package: packageBench,
  ipvs: ipvsBench,
  // Side by side with kube-proxy's layouts (issue 7); also writes docs/performance.md.
  compare: compareBench,
};

async function machineInfo(): Promise<string> {
  const read = async (cmd: string, args: string[]) => {
    try {
      const out = await new Deno.Command(cmd, { args, stderr: "null" }).output();
      return new TextDecoder().decode(out.stdout).trim();
    } catch {
      return "unknown";
    }
  };
  const cpus = (await Deno.readTextFile("/proc/cpuinfo").catch(() => "")).split("\n")
    .filter((l) => l.startsWith("model name")).map((l) => l.split(":")[1]!.trim());
  return [
    `Machine: ${cpus.length} x ${cpus[0] ?? "unknown CPU"}, ${
      Math.round(Deno.systemMemoryInfo().total / 2 ** 30)
    } GiB; ` +
    `kernel ${Deno.osRelease()}; ${await read("nft", ["--version"])}; Deno ${Deno.version.deno}.`,
  ].join("\n");
}

const quick = Deno.args.includes("--quick");
const onlyArg = Deno.args.find((a) => a.startsWith("--only="));
const only = onlyArg ? onlyArg.slice(7).split(",") : Object.keys(SUITES);
const report = new BenchReport();
for (const name of only) {
  const suite = SUITES[name];
  if (!suite) {
    throw new Error(
      `Cannot run benchmark suite ${name}: unknown (have ${Object.keys(SUITES).join(", ")})`,
    );
  }
  await suite(report, { quick });
}
const docs = decodeURIComponent(new URL("../docs/", import.meta.url).pathname);
await Deno.mkdir(docs, { recursive: true });
// A run of some suites (--only) keeps the other suites' last figures, so the
// report always shows every suite; the suites just run replace theirs.
report.keep(
  await previousFigures(`${docs}benchmarks.json`),
  new Set(only),
  Object.keys(SUITES),
);
await Deno.writeTextFile(`${docs}benchmarks.md`, report.toMarkdown(await machineInfo()));
await Deno.writeTextFile(`${docs}benchmarks.json`, JSON.stringify(report.figures, null, 1) + "\n");
console.log(`wrote ${docs}benchmarks.md`);
