/**
 * Runs INSIDE the IPVS test VM (bundled on the host with `deno bundle`, run by
 * the guest's deno): drives kpx's IPVS apply layer against the guest kernel's
 * real IPVS, kube-ipvs0 and nftables, and prints one JSON result on stdout.
 *
 *   deno run -A guest.js undo    an ipvsadm -R cut off half-way is undone
 *   deno run -A guest.js bench   full sync at 1k services, one-service deltas
 *
 * The caller sets up routes to the endpoint addresses (IPVS refuses a real
 * server it has no route to).
 */
import {
  IpLink,
  IpvsadmCli,
  IPVSApplier,
  NftCli,
  type ProcessResult,
  ProcessRunner,
  type Runner,
} from "../../src/apply/mod.ts";
import { defaultConfig, planContext } from "../../src/config/mod.ts";
import { Logger } from "../../src/log/mod.ts";
import { kpxMetrics } from "../../src/metrics/mod.ts";
import { allServices, formatRestore, type PlanContext, Planner } from "../../src/planner/mod.ts";
import { ClusterState, EndpointList, parseNode, type Service } from "../../src/state/mod.ts";
import { syntheticService, syntheticServices } from "../../bench/synthetic.ts";

/** Passes commands through; once armed, cuts the next `ipvsadm -R` after `cutAfter` lines. */
class CuttingRunner implements Runner {
  cutAfter: number | undefined;
  lines: string[][] = [];
  constructor(readonly inner: Runner) {}
  async run(
    argv: readonly string[],
    stdin?: Uint8Array | readonly Uint8Array[],
  ): Promise<ProcessResult> {
    if (argv[0] === "ipvsadm" && argv[1] === "-R" && stdin instanceof Uint8Array) {
      const lines = new TextDecoder().decode(stdin).split("\n").filter((l) => l !== "");
      this.lines.push(lines);
      const k = this.cutAfter;
      this.cutAfter = undefined;
      if (k !== undefined) {
        const r = await this.inner.run(
          argv,
          new TextEncoder().encode(lines.slice(0, k).join("\n") + "\n"),
        );
        return {
          ...r,
          stderr: `${r.stderr}injected: the kernel refused line ${k + 1} of ${lines.length}\n`,
        };
      }
    }
    return await this.inner.run(argv, stdin);
  }
}

const NODE = parseNode({
  metadata: { name: "node-a" },
  spec: { podCIDRs: ["10.244.0.0/24"] },
  status: { addresses: [{ type: "InternalIP", address: "10.0.1.1" }] },
});

function context(): PlanContext {
  const config = { ...defaultConfig(), mode: "ipvs" as const, clusterCIDRs: ["10.244.0.0/16"] };
  const { notes: _notes, ...ctx } = planContext(config, "node-a", NODE);
  return ctx;
}

/** Loads joined planner Services into a ClusterState (the synthetic ones are pre-joined). */
function load(state: ClusterState, services: readonly Service[]): void {
  for (const s of services) {
    state.upsertService({
      ...s,
      loadBalancerSourceRanges: [],
      ports: s.ports.map(({ endpoints: _e, ...p }) => p),
    });
    for (const p of s.ports) {
      state.upsertSlice({
        namespace: s.namespace,
        name: `${s.name}-${p.name}`,
        id: `${s.namespace}/${s.name}-${p.name}`,
        serviceId: s.id,
        family: 4,
        ports: [{ name: p.name, protocol: p.protocol, port: p.endpoints[0]?.port ?? 8080 }],
        endpoints: new EndpointList(p.endpoints),
      });
    }
  }
}

function quiet(): Logger {
  return new Logger({ format: "json", write: (l) => console.error(l) });
}

async function restoreText(): Promise<string> {
  const out = await new Deno.Command("ipvsadm", { args: ["-Sn"] }).output();
  return new TextDecoder().decode(out.stdout);
}

async function undoScenario(): Promise<unknown> {
  const runner = new CuttingRunner(new ProcessRunner());
  const planner = await Planner.load();
  const state = new ClusterState("node-a");
  state.setNode(NODE);
  const web = (version: number, endpoints: number, nodePort = false, i = 1) =>
    syntheticService(i, endpoints, nodePort, version);
  load(state, [web(0, 2), web(0, 1, true, 2), web(0, 3, false, 3)]);
  const link = new IpLink(runner);
  const applier = new IPVSApplier({
    nft: new NftCli(runner),
    ipvs: new IpvsadmCli(runner),
    link,
    planner,
    log: quiet(),
    metrics: kpxMetrics(),
  });
  await applier.init();
  const ctx = context();
  const first = await applier.sync(state, ctx);
  const before = { ipvs: await restoreText(), addresses: await link.addresses() };
  // A change touching every kind of line: new service (-A, -a), replaced
  // endpoints (-a, -d), a removed service (-D); cut after the second line.
  state.deleteService("bench/svc-3");
  load(state, [web(5, 2), syntheticService(4, 2)]);
  runner.cutAfter = 2;
  const failed = await applier.sync(state, ctx);
  const afterFailure = { ipvs: await restoreText(), addresses: await link.addresses() };
  const retry = await applier.sync(state, ctx);
  const afterRetry = { ipvs: await restoreText(), addresses: await link.addresses() };
  const want = planner.planIPVSFull(state.services(), ctx, { layout: 0, chains: [], sets: [] }, 1);
  return {
    first: { ok: first.ok, error: first.error?.message },
    failed: {
      ok: failed.ok,
      full: failed.full,
      restored: failed.restored,
      error: failed.error?.message,
    },
    retry: { ok: retry.ok, full: retry.full, error: retry.error?.message },
    cutLines: runner.lines[1],
    before,
    afterFailure,
    afterRetry,
    expected: {
      ipvs: formatRestore(allServices(want.ipvs.records)),
      addresses: want.ipvs.addresses,
    },
  };
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await f();
  return [v, performance.now() - t];
}

async function benchScenario(): Promise<unknown> {
  const runner = new ProcessRunner();
  const planner = await Planner.load();
  const n = Number(Deno.args[1] ?? 1000);
  const deltas = Number(Deno.args[2] ?? 10);
  const state = new ClusterState("node-a");
  state.setNode(NODE);
  const services = syntheticServices(n, 10);
  load(state, services);
  const ipvs = new IpvsadmCli(runner);
  const applier = new IPVSApplier({
    nft: new NftCli(runner),
    ipvs,
    link: new IpLink(runner),
    planner,
    log: new Logger({ write: () => {} }),
    metrics: kpxMetrics(),
  });
  await applier.init();
  const ctx = context();
  const [full, fullMs] = await timed(() => applier.sync(state, ctx));
  const [resync, resyncMs] = await timed(() => applier.sync(state, ctx, { full: true }));
  const [, listMs] = await timed(() => ipvs.list());
  const delta: number[] = [];
  const deltaParts: Array<{ planMs: number; applyMs: number; verifyMs: number }> = [];
  for (let i = 0; i < deltas; i++) {
    // Replace 2 of service 42's 10 endpoints, as a rolling update does.
    load(state, [syntheticService(42, 10, false, (i + 1) * 2)]);
    const [r, ms] = await timed(() => applier.sync(state, ctx));
    if (!r.ok || r.full) {
      throw new Error(
        `Cannot benchmark deltas: sync ${i} ok=${r.ok} full=${r.full}: ${r.error?.message}`,
      );
    }
    delta.push(ms);
    deltaParts.push({ planMs: r.planMs, applyMs: r.applyMs, verifyMs: r.verifyMs });
  }
  const virtualServices = (await ipvs.list()).size;
  // One ipvsadm per change versus one ipvsadm -R, on 100 new virtual services.
  const lines = Array.from({ length: 100 }, (_, i) => `-A -t 10.200.${i >> 8}.${i & 255}:80 -s rr`);
  const perLineErrors: string[] = [];
  const [, perLineMs] = await timed(async () => {
    for (const l of lines) {
      const r = await runner.run(["ipvsadm", ...l.split(" ")]);
      if (r.code !== 0) {
        perLineErrors.push(`ipvsadm ${l}: exit status ${r.code}: ${r.stderr.trim()}`);
      }
    }
  });
  const clear = await runner.run(["ipvsadm", "-C"]);
  if (clear.code !== 0) {
    perLineErrors.push(`ipvsadm -C: exit status ${clear.code}: ${clear.stderr}`);
  }
  const [restoreErrors, restoreMs] = await timed(() => ipvs.restore(lines));
  const restored = (await ipvs.list()).size;
  if (restored !== lines.length) {
    restoreErrors.push(`ipvsadm -R left ${restored} virtual services, not ${lines.length}`);
  }
  return {
    services: n,
    virtualServices,
    full: {
      ok: full.ok,
      full: full.full,
      ms: fullMs,
      planMs: full.planMs,
      applyMs: full.applyMs,
      verifyMs: full.verifyMs,
      error: full.error?.message,
    },
    resync: { ok: resync.ok, full: resync.full, ms: resyncMs, error: resync.error?.message },
    listMs,
    deltaMs: delta,
    deltaParts,
    perLine: { lines: lines.length, oneEachMs: perLineMs, perLineErrors, restoreMs, restoreErrors },
  };
}

const scenario = Deno.args[0];
const result = scenario === "undo"
  ? await undoScenario()
  : scenario === "bench"
  ? await benchScenario()
  : undefined;
if (result === undefined) {
  throw new Error(`Cannot run scenario ${JSON.stringify(scenario)}: use undo or bench`);
}
console.log(JSON.stringify(result));
