/**
 * A planner that traps mid-sync keeps the last good rules in place. The trap
 * is real: the built planner with its memory capped at 4 MiB runs out of
 * memory (AssemblyScript's runtime executes `unreachable`) on a service with
 * hundreds of endpoints, as a runaway or buggy planner would, while small
 * clusters plan normally. Checked at each layer: the Planner (a PlannerError,
 * and a fresh instance for the next plan), the Applier with the in-memory
 * nftables and with the real kernel, and the daemon (log line, failure
 * metric, retry that converges once the input is plannable again).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { stringify } from "yaml";
import { Applier, FakeNft } from "../src/apply/mod.ts";
import { FakeNftables } from "../src/apply/nft_fake.ts";
import { defaultConfig } from "../src/config/mod.ts";
import { Daemon } from "../src/daemon/mod.ts";
import { Logger } from "../src/log/mod.ts";
import { kpxMetrics } from "../src/metrics/mod.ts";
import { EMPTY_INVENTORY, Planner, PlannerError } from "../src/planner/mod.ts";
import { ClusterState, parseEndpointSlice, parseService } from "../src/state/mod.ts";
import { CONTEXT } from "./contexts.ts";
import { normalizeListing, SKIP_KERNEL, withKernelNamespace } from "./kernel.ts";

/** 64 pages of 64 KiB: enough for a few small services, not for 300 endpoints. */
const CAPPED = await Planner.load(undefined, { memoryLimitPages: 64 });
const planner = await Planner.load();
const quiet = new Logger({ write: () => {} });
const BIG = 300;

function serviceObj(name: string, ip: number): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: { clusterIP: `10.96.0.${ip}`, ports: [{ name: "http", port: 80 }] },
  };
}

function sliceObj(name: string, endpoints: number): Record<string, unknown> {
  const eps = [];
  for (let i = 1; i <= endpoints; i++) {
    eps.push({
      addresses: [`10.244.${i >> 8}.${i & 255}`],
      nodeName: "node-b",
      conditions: { ready: true },
    });
  }
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${name}-1`,
      namespace: "default",
      labels: { "kubernetes.io/service-name": name },
    },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080 }],
    endpoints: eps,
  };
}

/** Three small services, and `extra` with n endpoints. */
function objects(extra: number): Record<string, unknown>[] {
  const out = [];
  for (const [i, name] of ["a", "b", "c"].entries()) {
    out.push(serviceObj(name, 10 + i), sliceObj(name, 3));
  }
  if (extra > 0) out.push(serviceObj("extra", 20), sliceObj("extra", extra));
  return out;
}

function feed(state: ClusterState, objs: Record<string, unknown>[]): void {
  for (const o of objs) {
    if (o["kind"] === "Service") {
      const r = parseService(o);
      if (r.kind === "service") state.upsertService(r.spec);
    } else {
      const r = parseEndpointSlice(o);
      if (r.kind === "slice") state.upsertSlice(r.spec);
    }
  }
}

function stateOf(extra: number): ClusterState {
  const state = new ClusterState("node-a");
  feed(state, objects(extra));
  return state;
}

function isTrap(e: unknown): boolean {
  return e instanceof PlannerError && e.cause instanceof WebAssembly.RuntimeError;
}

function withoutGeneration(
  s: { chains: Record<string, string[]>; sets: Record<string, string[]> },
) {
  const { ["generation-l1"]: _g, ...sets } = s.sets;
  const chains = Object.fromEntries(
    Object.entries(s.chains).filter(([n]) => !/^(slot|pick)-/.test(n)),
  );
  return { chains, sets };
}

function freshSnapshot(state: ClusterState) {
  const t = new FakeNftables();
  t.apply(planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch);
  return withoutGeneration(t.snapshot()!);
}

Deno.test("Planner: a trap is a PlannerError, and the next plan runs in a fresh instance", () => {
  const small = stateOf(0).services();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const want = text(planner.planFull(small, CONTEXT, EMPTY_INVENTORY, 1).batch);
  equal(text(CAPPED.planFull(small, CONTEXT, EMPTY_INVENTORY, 1).batch), want);
  for (let round = 0; round < 3; round++) {
    let err: unknown;
    try {
      CAPPED.planFull(stateOf(BIG).services(), CONTEXT, EMPTY_INVENTORY, 1);
    } catch (e) {
      err = e;
    }
    ok(isTrap(err), `round ${round}: expected a trap, got ${err}`);
    ok((err as Error).message.startsWith("Cannot plan: the planner failed"));
    // The trapped instance's memory is full (its allocator never frees):
    // only a new instance can plan again, and it plans the same bytes.
    equal(
      text(CAPPED.planFull(small, CONTEXT, EMPTY_INVENTORY, 1).batch),
      want,
      `round ${round}: the plan after a trap differs`,
    );
  }
});

Deno.test("Applier: a planner trap keeps the last good rules, counts a failure, and the next good sync works", async () => {
  const nft = new FakeNft();
  const metrics = kpxMetrics();
  const applier = new Applier({ nft, planner: CAPPED, log: quiet, metrics });
  await applier.init();
  const state = stateOf(0);
  const first = await applier.sync(state, CONTEXT);
  ok(first.ok, first.error?.message ?? "");
  const good = nft.table.snapshot();
  const attempts = nft.attempts;

  // A service the planner cannot plan: the delta traps, and so does the
  // retry (a full plan, the delta's changes having been taken).
  feed(state, objects(BIG));
  for (let i = 0; i < 2; i++) {
    const r = await applier.sync(state, CONTEXT);
    equal(r.ok, false);
    ok(isTrap(r.error), `sync ${i}: expected a trap, got ${r.error}`);
  }
  equal(nft.attempts, attempts, "nothing was sent to nftables");
  deepEqual(nft.table.snapshot(), good, "the last good rules are untouched");
  equal(metrics.nftablesSyncFailures.get(), 2);
  equal(metrics.applyFailures.get(), 0);

  // The service shrinks: a full sync (the session was invalidated) programs it.
  feed(state, [sliceObj("extra", 4)]);
  const fixed = await applier.sync(state, CONTEXT);
  ok(fixed.ok && fixed.full, fixed.error?.message ?? "");
  deepEqual(withoutGeneration(nft.table.snapshot()!), freshSnapshot(state));
  // And deltas work again after it.
  feed(state, [sliceObj("a", 2)]);
  const delta = await applier.sync(state, CONTEXT);
  ok(delta.ok && !delta.full, delta.error?.message ?? "");
  deepEqual(withoutGeneration(nft.table.snapshot()!), freshSnapshot(state));
});

Deno.test({
  name: "kernel: a planner trap during a sync leaves the kernel's rules exactly as they were",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace((ns) =>
      withKernelNamespace(async (reference) => {
        const metrics = kpxMetrics();
        const applier = new Applier({ nft: ns.nft, planner: CAPPED, log: quiet, metrics });
        await applier.init();
        const state = stateOf(0);
        ok((await applier.sync(state, CONTEXT)).ok);
        const good = normalizeListing(await ns.listTable());
        ok(Object.keys(good).length > 10, "the first sync programmed the table");

        feed(state, objects(BIG));
        const r = await applier.sync(state, CONTEXT);
        equal(r.ok, false);
        ok(isTrap(r.error), `expected a trap, got ${r.error}`);
        deepEqual(normalizeListing(await ns.listTable()), good, "the kernel's rules changed");
        equal((await ns.nft.readMarker(1)).generation, 1, "the marker is the last good one");
        equal(metrics.nftablesSyncFailures.get(), 1);

        feed(state, [sliceObj("extra", 4)]);
        const fixed = await applier.sync(state, CONTEXT);
        ok(fixed.ok && fixed.full, fixed.error?.message ?? "");
        await reference.nft.apply(
          planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 1).batch,
        );
        deepEqual(
          normalizeListing(await ns.listTable(), { dropShared: true }),
          normalizeListing(await reference.listTable(), { dropShared: true }),
        );
      })
    ),
});

async function write(dir: string, name: string, objs: unknown[]): Promise<void> {
  await Deno.writeTextFile(`${dir}/${name}.tmp`, objs.map((o) => stringify(o)).join("---\n"));
  await Deno.rename(`${dir}/${name}.tmp`, `${dir}/${name}`);
}

async function until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

Deno.test({
  name: "Daemon: a planner trap is logged and counted, the rules stay, and the retry converges",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const lines: string[] = [];
    await write(dir, "node.yaml", [{
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "node-a" },
      status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] },
    }]);
    await write(dir, "small.yaml", objects(0));
    const nft = new FakeNft();
    const daemon = new Daemon({
      config: {
        ...defaultConfig(),
        minSyncPeriodMs: 20,
        syncPeriodMs: 1000,
        healthzBindAddress: "127.0.0.1:0",
        metricsBindAddress: "127.0.0.1:0",
      },
      nodeName: "node-a",
      manifests: dir,
      planner: CAPPED,
      nft,
      log: new Logger({ write: (l) => lines.push(l) }),
    });
    try {
      const synced = daemon.nextSync();
      await daemon.start();
      await synced;
      ok(daemon.lastSync?.ok, "the first sync works");
      const good = nft.table.snapshot();
      const generation = daemon.lastSync!.generation;

      await write(dir, "extra.yaml", [serviceObj("extra", 20), sliceObj("extra", BIG)]);
      await until(() => daemon.metrics.nftablesSyncFailures.get() >= 1, "a failed sync");
      const failure = lines.find((l) => l.includes("Sync failed"));
      ok(failure, "the failure is logged");
      ok(failure.includes("level=error"), failure);
      ok(failure.includes("Cannot plan: the planner failed"), failure);
      ok(failure.includes("unreachable"), `the trap is named: ${failure}`);
      ok(
        daemon.metrics.registry.render().includes(
          `kubeproxy_sync_proxy_rules_nftables_sync_failures_total ${daemon.metrics.nftablesSyncFailures.get()}`,
        ),
        "the failure metric is exported",
      );
      equal(daemon.lastSync?.ok, false);
      deepEqual(nft.table.snapshot(), good, "the last good rules stay");
      equal((await nft.readMarker(1)).generation, generation);

      await write(dir, "extra.yaml", [serviceObj("extra", 20), sliceObj("extra", 4)]);
      await until(() => daemon.lastSync?.ok === true, "a good sync after the fix");
      const sets = nft.table.snapshot()!.sets;
      ok(sets["service-ips4"]?.some((e) => e.includes('"10.96.0.20"')), "extra is programmed");
      equal(sets["vip-endpoint-addrs4"]?.length, 3 * 3 + 4, "with its 4 endpoints");
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
