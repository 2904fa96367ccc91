/**
 * kpx run against the API server for tests (TLS, bearer token, list+watch,
 * bookmarks, 410, faults), programming a testbed node. The daemon runs in
 * this process (it must reach the server on loopback) with its nft and
 * conntrack commands sent into the node's namespace.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { NftCli, ProcessRunner } from "../../src/apply/mod.ts";
import { defaultConfig } from "../../src/config/mod.ts";
import { Daemon } from "../../src/daemon/mod.ts";
import { Logger } from "../../src/log/mod.ts";
import { EMPTY_INVENTORY, Planner } from "../../src/planner/mod.ts";
import { feedState, type ManifestObject } from "../../src/source/mod.ts";
import { normalizeListing } from "../kernel.ts";
import { withNamespace } from "../../bench/netns.ts";
import {
  type ApiServer,
  type KubeObject,
  shouldSkipKernelTests,
  startApiServer,
  Testbed,
  writeKubeconfig,
} from "./mod.ts";
import { nodeObject, serviceObject, sliceObject } from "./demo_manifests.ts";
import type { PodHandle } from "./testbed.ts";

const planner = await Planner.load();
const skip = await shouldSkipKernelTests();

interface Rig {
  tb: Testbed;
  api: ApiServer;
  daemon: Daemon;
  logs: string[];
  kubeconfig: string;
  dir: string;
}

async function rig(
  tb: Testbed,
  api: ApiServer,
  opts: { minSyncPeriodMs?: number } = {},
): Promise<Rig> {
  const dir = await Deno.makeTempDir({ prefix: "kpx-api-" });
  const kubeconfig = await writeKubeconfig(dir, api);
  const logs: string[] = [];
  const node = tb.node(0);
  const runner = new ProcessRunner(["ip", "netns", "exec", node.ns]);
  const daemon = new Daemon({
    config: {
      ...defaultConfig(),
      kubeconfig,
      clusterCIDRs: ["10.244.0.0/16"],
      minSyncPeriodMs: opts.minSyncPeriodMs ?? 100,
      healthzBindAddress: "127.0.0.1:0",
      metricsBindAddress: "127.0.0.1:0",
      verbosity: 2,
    },
    nodeName: node.name,
    planner,
    nft: new NftCli(runner),
    conntrack: runner,
    log: new Logger({ verbosity: 2, write: (l) => logs.push(l) }),
  });
  return { tb, api, daemon, logs, kubeconfig, dir };
}

async function answered(
  tb: Testbed,
  from: PodHandle,
  ip: string,
  port: number,
  n = 6,
): Promise<Set<string>> {
  const res = await tb.requestMany(
    from,
    Array.from({ length: n }, () => ({ ip, port, protocol: "tcp" as const, timeoutMs: 800 })),
  );
  return new Set(res.map((r) => r.ok ? r.pod : `failed:${r.failure}`));
}

/** Polls until the pods answering ip:port are exactly `want` (bounded). */
async function until(
  tb: Testbed,
  from: PodHandle,
  ip: string,
  port: number,
  want: string[],
  what: string,
  ms = 15_000,
) {
  const end = Date.now() + ms;
  let last = new Set<string>();
  while (Date.now() < end) {
    last = await answered(tb, from, ip, port);
    if (last.size === want.length && want.every((w) => last.has(w))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `Timed out waiting for ${what}: ${ip}:${port} answered by ${[...last].join(", ")}, wanted ${
      want.join(", ")
    }`,
  );
}

const kube = (o: Record<string, unknown>) => o as unknown as KubeObject;
const svc = (name: string, ip: string, port = 80) =>
  kube(serviceObject({ name, clusterIP: ip, port, targetPort: 8080 }));
const slice = (tb: Testbed, name: string, pods: PodHandle[]) =>
  kube(sliceObject(name, pods, tb.nodes, { port: 8080 }));

Deno.test({
  name:
    "kpx run (API): changes reach the kernel; a bad object is skipped; API restart and compaction (410) are survived exactly",
  ignore: skip,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 4, echoPorts: [8080] });
    await using api = await startApiServer({ bookmarkIntervalMs: 500 });
    const [client, a, b, c] = tb.pods as PodHandle[] as [
      PodHandle,
      PodHandle,
      PodHandle,
      PodHandle,
    ];
    api.store.create("nodes", kube(nodeObject(tb.node(0))));
    api.store.create("services", svc("web", "10.96.0.10"));
    api.store.create("endpointslices", slice(tb, "web", [a, b]));
    const r = await rig(tb, api);
    try {
      await r.daemon.start();
      await until(tb, client, "10.96.0.10", 80, [a.name, b.name], "the first sync");

      // Create, update, delete through the API.
      api.store.create("services", svc("api", "10.96.0.11"));
      api.store.create("endpointslices", slice(tb, "api", [c]));
      await until(tb, client, "10.96.0.11", 80, [c.name], "a created service");
      api.store.update("endpointslices", slice(tb, "web", [b, c]));
      await until(tb, client, "10.96.0.10", 80, [b.name, c.name], "an updated slice");
      api.store.delete("services", "api", "default");
      await until(tb, client, "10.96.0.11", 80, ["failed:timeout"], "a deleted service");

      // A bad object among good ones: one warning, the rest still programmed.
      api.store.create(
        "services",
        kube({
          ...serviceObject({ name: "bad", clusterIP: "10.96.0.12", port: 80, targetPort: 8080 }),
          spec: { clusterIP: "10.96.0.12", externalIPs: ["198.51.100.999"], ports: [{ port: 80 }] },
        }),
      );
      api.store.create("services", svc("good", "10.96.0.13"));
      api.store.create("endpointslices", slice(tb, "good", [a]));
      await until(tb, client, "10.96.0.13", 80, [a.name], "the good service next to a bad one");
      const bad = r.logs.filter((l) => l.includes("level=warn") && l.includes("default/bad"));
      equal(bad.length, 1, `one warning for the bad object:\n${bad.join("\n")}`);
      ok(bad[0]!.includes("198.51.100.999"));
      equal(r.daemon.metrics.skippedObjects.get({ kind: "Service" }), 1);

      // API server restart mid-watch (state kept): kpx reconnects and follows.
      await api.restart({ keepState: true });
      api.store.update("endpointslices", slice(tb, "web", [a]));
      await until(
        tb,
        client,
        "10.96.0.10",
        80,
        [a.name],
        "a change after the API server restarted",
      );

      // Compaction while kpx's watches are cut: 410 -> relist, final state exact.
      api.dropWatches();
      api.store.delete("services", "good", "default");
      api.store.update("endpointslices", slice(tb, "web", [b, c]));
      api.store.create("services", svc("late", "10.96.0.14"));
      api.store.create("endpointslices", slice(tb, "late", [c]));
      api.store.compact();
      await until(tb, client, "10.96.0.14", 80, [c.name], "a service created during compaction");
      await until(
        tb,
        client,
        "10.96.0.10",
        80,
        [b.name, c.name],
        "an update made during compaction",
      );
      await until(
        tb,
        client,
        "10.96.0.13",
        80,
        ["failed:timeout"],
        "a delete made during compaction",
      );
      ok(api.requests.count((q) => !q.watch && q.path === "/api/v1/services") >= 2, "kpx relisted");
      ok(r.logs.some((l) => l.includes("Source error")), "the dropped watches were reported");

      // The kernel holds exactly what a full plan of the server's objects gives.
      await r.daemon.nextSync().catch(() => {});
      const objects: ManifestObject[] = [
        ...api.store.list("services").map((o) => ({
          apiVersion: "v1",
          kind: "Service",
          object: o as unknown as Record<string, unknown>,
          origin: "api",
        })),
        ...api.store.list("endpointslices").map((o) => ({
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          object: o as unknown as Record<string, unknown>,
          origin: "api",
        })),
        ...api.store.list("nodes").map((o) => ({
          apiVersion: "v1",
          kind: "Node",
          object: o as unknown as Record<string, unknown>,
          origin: "api",
        })),
      ];
      const fed = feedState(objects, tb.node(0).name);
      const ctxPlan = planner.planFull(
        fed.state.services(),
        {
          nodeName: tb.node(0).name,
          nodeZone: "zone-0",
          masqueradeBit: 14,
          masqueradeAll: false,
          dropInvalid: true,
          localDetection: { mode: "CIDR", cidrs: ["10.244.0.0/16"] },
          nodePortAddresses: null,
          serviceCIDRs: [],
        },
        EMPTY_INVENTORY,
        1,
      );
      const live =
        (await tb.exec(tb.node(0), ["nft", "-j", "list", "table", "inet", "kpx"])).stdout;
      await withNamespace(async (ns) => {
        const ref = new ProcessRunner(["ip", "netns", "exec", ns]);
        await new NftCli(ref).apply(ctxPlan.batch);
        const refListing = JSON.parse(
          new TextDecoder().decode(
            (await ref.run(["nft", "-j", "list", "table", "inet", "kpx"])).stdout,
          ),
        ).nftables;
        deepEqual(
          normalizeListing(JSON.parse(live).nftables, { dropShared: true }),
          normalizeListing(refListing, { dropShared: true }),
          "the kernel matches a full plan of the API server's objects",
        );
      });
    } finally {
      await r.daemon.stop();
      await Deno.remove(r.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "kpx run (API): API server down at start-up -> retries, then programs; nothing before the first complete list",
  ignore: skip,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 2, echoPorts: [8080] });
    await using api = await startApiServer();
    const [client, a] = tb.pods as PodHandle[] as [PodHandle, PodHandle];
    api.store.create("nodes", kube(nodeObject(tb.node(0))));
    api.store.create("services", svc("web", "10.96.0.10"));
    api.store.create("endpointslices", slice(tb, "web", [a]));
    await api.stop();
    const r = await rig(tb, api);
    try {
      await r.daemon.start();
      await new Promise((res) => setTimeout(res, 2500));
      ok(r.logs.some((l) => l.includes("Source error")), "the failures are logged");
      equal(r.daemon.lastSync, undefined, "no sync without a complete picture");
      const tables = await tb.exec(tb.node(0), ["nft", "list", "tables"]);
      ok(!tables.stdout.includes("kpx"), "no rules were programmed");
      await api.restart({ keepState: true });
      await until(tb, client, "10.96.0.10", 80, [a.name], "rules once the API is back", 40_000);
    } finally {
      await r.daemon.stop();
      await Deno.remove(r.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "kpx run (API): 1000 endpoint changes per second for 10 s -> bounded memory, coalesced syncs, exact final state",
  ignore: skip,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 5, echoPorts: [8080] });
    await using api = await startApiServer({ historyLimit: 20_000 });
    const pods = tb.pods as PodHandle[];
    const [client, ...backends] = pods as [PodHandle, ...PodHandle[]];
    api.store.create("nodes", kube(nodeObject(tb.node(0))));
    const services = 50;
    for (let i = 0; i < services; i++) {
      api.store.create("services", svc(`s${i}`, `10.96.1.${i + 1}`));
      api.store.create("endpointslices", slice(tb, `s${i}`, [backends[i % 4]!]));
    }
    const r = await rig(tb, api, { minSyncPeriodMs: 1000 });
    try {
      await r.daemon.start();
      await until(tb, client, "10.96.1.1", 80, [backends[0]!.name], "the first sync");
      const syncsBefore = r.daemon.metrics.syncDuration.count();
      const rssBefore = Deno.memoryUsage().rss;
      let rssPeak = rssBefore;
      const started = Date.now();
      let changes = 0;
      // 10 ticks of 100 ms per second: 100 changes per tick.
      for (let tick = 0; tick < 100; tick++) {
        for (let k = 0; k < 100; k++) {
          const i = (tick * 100 + k) % services;
          // Each change picks a different subset of the 4 backends.
          const mask = 1 + ((tick * 7 + k) % 15);
          api.store.update(
            "endpointslices",
            slice(tb, `s${i}`, backends.filter((_, j) => mask & (1 << j))),
          );
          changes++;
        }
        rssPeak = Math.max(rssPeak, Deno.memoryUsage().rss);
        const due = started + (tick + 1) * 100;
        await new Promise((res) => setTimeout(res, Math.max(0, due - Date.now())));
      }
      const elapsed = (Date.now() - started) / 1000;
      equal(changes, 10_000);
      ok(elapsed < 13, `the changes took ${elapsed.toFixed(1)} s`);
      // Let the last changes sync, then compare with the server's final objects.
      await new Promise((res) => setTimeout(res, 2500));
      const syncs = r.daemon.metrics.syncDuration.count() - syncsBefore;
      ok(
        syncs >= 5 && syncs <= 16,
        `coalesced: ${syncs} syncs for ${changes} changes over ${
          elapsed.toFixed(1)
        } s with minSyncPeriod 1 s`,
      );
      const grown = (rssPeak - rssBefore) / 2 ** 20;
      ok(grown < 200, `memory bounded: grew ${grown.toFixed(0)} MB`);
      for (let i = 0; i < services; i += 7) {
        const stored = api.store.get("endpointslices", `s${i}-abc`, "default") as unknown as {
          endpoints: Array<{ targetRef: { name: string } }>;
        };
        const want = stored.endpoints.map((e) => e.targetRef.name);
        await until(tb, client, `10.96.1.${i + 1}`, 80, want, `the final endpoints of s${i}`, 5000);
      }
    } finally {
      await r.daemon.stop();
      await Deno.remove(r.dir, { recursive: true });
    }
  },
});
