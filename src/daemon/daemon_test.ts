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
