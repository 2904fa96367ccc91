/**
 * The daemon with a manifest directory and the in-memory nftables: what it
 * serves. /healthz and /livez follow kube-proxy (a queued change not synced
 * within 2 x syncPeriod is unhealthy; a node being deleted fails /healthz
 * only), /metrics exposes kube-proxy's names, and each eTP=Local
 * LoadBalancer's healthCheckNodePort answers 200 with local endpoints, 503
 * without.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { stringify } from "yaml";
import { FakeNft } from "../apply/mod.ts";
import { defaultConfig } from "../config/mod.ts";
import { Logger } from "../log/mod.ts";
import { Planner } from "../planner/mod.ts";
import { Daemon } from "./daemon.ts";
import { sample } from "./_test_metrics.ts";

const planner = await Planner.load();

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const node = (deleting = false) => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: "node-a", ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
  status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] },
});
const lb = (hcPort: number) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: "default" },
  spec: {
    type: "LoadBalancer",
    clusterIP: "10.96.0.10",
    externalTrafficPolicy: "Local",
    healthCheckNodePort: hcPort,
    ports: [{ name: "http", port: 80, nodePort: 30080 }],
  },
  status: { loadBalancer: { ingress: [{ ip: "203.0.113.10" }] } },
});
const slice = (nodeName: string) => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: {
    name: "web-abc",
    namespace: "default",
    labels: { "kubernetes.io/service-name": "web" },
  },
  addressType: "IPv4",
  ports: [{ name: "http", port: 8080 }],
  endpoints: [{ addresses: ["10.244.0.5"], nodeName, conditions: { ready: true } }],
});

async function write(dir: string, name: string, objects: unknown[]): Promise<void> {
  await Deno.writeTextFile(`${dir}/${name}.tmp`, objects.map((o) => stringify(o)).join("---\n"));
  await Deno.rename(`${dir}/${name}.tmp`, `${dir}/${name}`);
}

async function get(
  port: number,
  path: string,
): Promise<{ status: number; body: string; headers: Headers }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text(), headers: r.headers };
}

async function until(
  pred: () => boolean | Promise<boolean>,
  what: string,
  ms = 10_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "Daemon serves kube-proxy's /healthz, /livez, /metrics and health check node ports",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const hcPort = freePort();
    await write(dir, "node.yaml", [node()]);
    await write(dir, "web.yaml", [lb(hcPort), slice("node-a")]);
    const nft = new FakeNft();
    const config = {
      ...defaultConfig(),
      minSyncPeriodMs: 50,
      syncPeriodMs: 1000,
      healthzBindAddress: "127.0.0.1:0",
      metricsBindAddress: "127.0.0.1:0",
    };
    const daemon = new Daemon({
      config,
      nodeName: "node-a",
      manifests: dir,
      planner,
      nft,
      log: new Logger({ write: () => {} }),
    });
    try {
      const synced = daemon.nextSync();
      await daemon.start();
      await synced;
      const [healthz, metrics] = daemon.addresses.map((a) => a.port) as [number, number];

      const h = await get(healthz, "/healthz");
      equal(h.status, 200);
      equal(h.headers.get("content-type"), "application/json");
      deepEqual(Object.keys(JSON.parse(h.body)).sort(), [
        "currentTime",
        "lastUpdated",
        "nodeEligible",
      ]);
      equal((await get(healthz, "/livez")).status, 200);
      equal((await get(healthz, "/other")).status, 404);

      const m = await get(metrics, "/metrics");
      ok(m.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
      ok(/^kubeproxy_sync_proxy_rules_duration_seconds_count 1$/m.test(m.body), "one sync counted");
      ok(/^kpx_rules_generation 1$/m.test(m.body));
      ok(/^kubeproxy_proxy_healthz_total\{code="200"\} 1$/m.test(m.body));
      equal((await get(metrics, "/proxyMode")).body, "nftables");

      // The health check node port: one local ready endpoint.
      const hc = await get(hcPort, "/");
      equal(hc.status, 200);
      deepEqual(JSON.parse(hc.body), {
        service: { namespace: "default", name: "web" },
        localEndpoints: 1,
        serviceProxyHealthy: true,
      });
      equal(hc.headers.get("x-load-balancing-endpoint-weight"), "1");

      // The endpoint moves to another node: 503 with 0 local endpoints.
      await write(dir, "web.yaml", [lb(hcPort), slice("node-b")]);
      await until(
        async () => (await get(hcPort, "/")).status === 503,
        "503 from the health check port",
      );
      equal(JSON.parse((await get(hcPort, "/")).body).localEndpoints, 0);

      // The node is being deleted: /healthz fails (LBs drain it), /livez does not.
      await write(dir, "node.yaml", [node(true)]);
      await until(async () => (await get(healthz, "/healthz")).status === 503, "503 from /healthz");
      equal(JSON.parse((await get(healthz, "/healthz")).body).nodeEligible, false);
      equal((await get(healthz, "/livez")).status, 200);
      await write(dir, "node.yaml", [node(false)]);
      await until(async () => (await get(healthz, "/healthz")).status === 200, "200 again");

      // Syncs stall: a change waits more than 2 x syncPeriod -> unhealthy.
      nft.failNextApplies = 1_000_000;
      await write(dir, "web.yaml", [lb(hcPort), slice("node-a")]);
      await until(
        async () => (await get(healthz, "/livez")).status === 503,
        "/livez to fail after the stall",
        8000,
      );
      nft.failNextApplies = 0;
      await until(
        async () => (await get(healthz, "/livez")).status === 200,
        "/livez to recover",
        8000,
      );
      ok(daemon.metrics.applyFailures.get() > 0);
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time";

function localPolicyService(name: string, clusterIP: string, spec: Record<string, unknown>) {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: { clusterIP, ports: [{ name: "http", port: 80 }], ...spec },
  };
}

function endpoints(
  service: string,
  ports: string[],
  eps: Array<{ ip: string; node: string; ready?: boolean; terminating?: boolean }>,
  trigger?: string,
) {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${service}-1`,
      namespace: "default",
      labels: { "kubernetes.io/service-name": service },
      ...(trigger ? { annotations: { [TRIGGER]: trigger } } : {}),
    },
    addressType: "IPv4",
    ports: ports.map((name, i) => ({ name, port: 8080 + i })),
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      conditions: {
        ready: e.ready ?? true,
        serving: e.ready ?? true ? true : e.terminating ?? false,
        terminating: e.terminating ?? false,
      },
    })),
  };
}

Deno.test({
  name:
    "Daemon /metrics: pending changes, no-local-endpoint services by policy, and sync and programming latencies",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const hcPort = freePort();
    const twoPorts = [{ name: "http", port: 80 }, { name: "dns", port: 53 }];
    // iTP=Local, endpoints only elsewhere, two ports: kube-proxy counts service ports.
    const itp = localPolicyService("itp", "10.96.0.20", {
      internalTrafficPolicy: "Local",
      ports: twoPorts,
    });
    const itpSlice = (node: string, trigger?: string) =>
      endpoints("itp", ["http", "dns"], [{ ip: "10.244.1.5", node }], trigger);
    await write(dir, "node.yaml", [node()]);
    await write(dir, "itp.yaml", [itp, itpSlice("node-b")]);
    await write(dir, "lb.yaml", [lb(hcPort), slice("node-b")]);
    await write(dir, "np.yaml", [
      localPolicyService("np", "10.96.0.30", {
        type: "NodePort",
        externalTrafficPolicy: "Local",
        ports: [{ name: "http", port: 80, nodePort: 30090 }],
      }),
      endpoints("np", ["http"], [{ ip: "10.244.0.7", node: "node-a" }]),
    ]);
    await write(dir, "other.yaml", [
      // No endpoints at all: not "no local endpoints" (kube-proxy rejects its traffic).
      localPolicyService("empty", "10.96.0.40", { internalTrafficPolicy: "Local" }),
      // Only a serving, terminating local endpoint: still usable locally.
      localPolicyService("term", "10.96.0.50", { internalTrafficPolicy: "Local" }),
      endpoints("term", ["http"], [{
        ip: "10.244.0.8",
        node: "node-a",
        ready: false,
        terminating: true,
      }]),
    ]);
    const nft = new FakeNft();
    const daemon = new Daemon({
      config: {
        ...defaultConfig(),
        minSyncPeriodMs: 50,
        syncPeriodMs: 1000,
        healthzBindAddress: "",
        metricsBindAddress: "",
      },
      nodeName: "node-a",
      manifests: dir,
      planner,
      nft,
      log: new Logger({ write: () => {} }),
    });
    const read = (series: string) => sample(daemon.metrics.registry.render(), series);
    const pending = () => ({
      services: read("kubeproxy_sync_proxy_rules_service_changes_pending"),
      endpoints: read("kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
    });
    const noLocal = (policy: string) =>
      read(`kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="${policy}"}`);
    const NP = "kubeproxy_network_programming_duration_seconds";
    const SYNC = "kubeproxy_sync_proxy_rules_duration_seconds";
    try {
      const synced = daemon.nextSync();
      await daemon.start();
      await synced;
      equal(noLocal("internal"), 2, "itp's two ports");
      equal(
        noLocal("external"),
        1,
        "the eTP=Local LoadBalancer; not the NodePort with a local endpoint",
      );
      equal(read(`${SYNC}_count`), 1);
      equal(read(`${SYNC}_bucket{le="+Inf"}`), 1);
      ok(read(`${SYNC}_sum`)! >= 0);
      equal(read(`${NP}_count`), 0, "no trigger times in the objects: nothing observed");
      ok(read("kpx_change_to_kernel_seconds_count")! > 0, "kpx's own latency counts every change");
      deepEqual(pending(), { services: 0, endpoints: 0 });

      // The kernel refuses the next syncs: the changes stay pending, and say so.
      nft.failNextApplies = 1_000_000;
      const trigger = new Date().toISOString();
      await write(dir, "itp.yaml", [itp, itpSlice("node-b", trigger)]);
      await write(dir, "np.yaml", [
        localPolicyService("np", "10.96.0.30", {
          type: "NodePort",
          externalTrafficPolicy: "Local",
          ports: [{ name: "http", port: 80, nodePort: 30091 }],
        }),
        endpoints("np", ["http"], [{ ip: "10.244.0.7", node: "node-a" }]),
      ]);
      await until(
        () => {
          const p = pending();
          return daemon.metrics.applyFailures.get() > 0 && p.services === 1 && p.endpoints === 1;
        },
        "one Service and one EndpointSlice change pending after a failed sync",
      );
      equal(read(`${SYNC}_count`), 1, "failed syncs are not observed");

      nft.failNextApplies = 0;
      await until(() => read(`${NP}_count`) === 1, "the programming latency of the slice change");
      deepEqual(pending(), { services: 0, endpoints: 0 });
      ok(read(`${SYNC}_count`)! >= 2);
      const np = read(`${NP}_sum`)!;
      ok(np > 0 && np < 30, `latency from the trigger time: ${np}s`);
      equal(read(`${NP}_bucket{le="+Inf"}`), 1);
      equal(read(`${NP}_bucket{le="0.005"}`), 0, "it includes the failed syncs' wait");

      // The endpoint moves here, without a trigger time: no new observation.
      const before = read("kpx_change_to_kernel_seconds_count")!;
      await write(dir, "itp.yaml", [itp, itpSlice("node-a")]);
      await until(() => noLocal("internal") === 0, "itp to have local endpoints");
      equal(read(`${NP}_count`), 1);
      ok(read("kpx_change_to_kernel_seconds_count")! > before);
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "Daemon.reload() applies a new log format and verbosity to every log line after it",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => {
    const lines: string[] = [];
    const config = { ...defaultConfig(), healthzBindAddress: "", metricsBindAddress: "" };
    const log = new Logger({
      write: (l) => lines.push(l),
      format: config.logFormat,
      verbosity: config.verbosity,
    });
    const daemon = new Daemon({ config, nodeName: "node-a", planner, nft: new FakeNft(), log });
    log.debug("before");
    equal(lines.length, 0);

    daemon.reload({ ...config, logFormat: "json", verbosity: 4 });
    const json = lines.map((l) => JSON.parse(l));
    ok(json.some((o) => o.msg === "Logging changed" && o.format === "json" && o.verbosity === 4));
    equal(json.at(-1).msg, "Configuration reloaded");
    log.debug("after");
    equal(JSON.parse(lines.at(-1)!).msg, "after", "debug lines now show, as JSON");
    equal(daemon.config.verbosity, 4);

    const n = lines.length;
    daemon.reload({ ...config, logFormat: "logfmt", verbosity: 0 });
    log.debug("hidden");
    ok(lines.slice(n).every((l) => l.startsWith("ts=")), "back to logfmt");
    ok(!lines.some((l) => l.includes("hidden")));
  },
});
