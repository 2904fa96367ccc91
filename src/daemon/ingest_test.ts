/**
 * Ingest's bookkeeping of changes not yet programmed, read the way Prometheus
 * reads it: kube-proxy's *_changes_pending gauges from the registry's text,
 * and the trigger times that feed network_programming_duration_seconds.
 */
import { deepEqual, equal } from "node:assert/strict";
import { Logger } from "../log/mod.ts";
import { kpxMetrics } from "../metrics/mod.ts";
import { ClusterState } from "../state/mod.ts";
import { Ingest } from "./ingest.ts";
import { sample } from "./_test_metrics.ts";

const TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time";

function service(name: string, clusterIP: string) {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default", resourceVersion: "1" },
    spec: { type: "ClusterIP", clusterIP, ports: [{ name: "http", port: 80 }] },
  };
}

function slice(name: string, svc: string, ip: string, trigger?: string) {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name,
      namespace: "default",
      labels: { "kubernetes.io/service-name": svc },
      ...(trigger ? { annotations: { [TRIGGER]: trigger } } : {}),
    },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080 }],
    endpoints: [{ addresses: [ip], nodeName: "node-a", conditions: { ready: true } }],
  };
}

function setup(start = Date.parse("2026-03-01T12:00:00Z")) {
  let now = start;
  const metrics = kpxMetrics();
  const ingest = new Ingest(
    new ClusterState("node-a"),
    new Logger({ write: () => {} }),
    metrics,
    () => now,
  );
  const pending = () => {
    const text = metrics.registry.render();
    return {
      services: sample(text, "kubeproxy_sync_proxy_rules_service_changes_pending"),
      endpoints: sample(text, "kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
    };
  };
  return { ingest, metrics, pending, advance: (ms: number) => now += ms, at: () => now };
}

Deno.test("Ingest counts pending Service changes per service and EndpointSlice changes per change", () => {
  const { ingest, pending } = setup();
  ingest.event("Service", "upsert", service("a", "10.96.0.1"));
  ingest.event("Service", "upsert", service("a", "10.96.0.1"));
  ingest.event("Service", "upsert", service("b", "10.96.0.2"));
  deepEqual(pending(), { services: 2, endpoints: 0 }, "endpoint changes are not service changes");

  ingest.event("EndpointSlice", "upsert", slice("a-1", "a", "10.244.0.1"));
  ingest.event("EndpointSlice", "upsert", slice("a-1", "a", "10.244.0.2"));
  ingest.event("EndpointSlice", "upsert", slice("c-1", "c", "10.244.0.3"));
  deepEqual(pending(), { services: 2, endpoints: 3 }, "slice changes do not count as services");
  ingest.event("EndpointSlice", "delete", slice("c-1", "c", "10.244.0.3"));
  deepEqual(pending(), { services: 2, endpoints: 4 });

  const taken = ingest.takePending();
  deepEqual(pending(), { services: 0, endpoints: 0 }, "a sync takes them all");
  equal(taken.get("default/a")?.endpointChanges, 2);
  equal(taken.get("default/c")?.serviceChanged, false);

  // The sync failed: they are pending again, with what arrived meanwhile.
  ingest.event("Service", "upsert", service("d", "10.96.0.4"));
  ingest.event("EndpointSlice", "upsert", slice("a-1", "a", "10.244.0.9"));
  ingest.restorePending(taken);
  deepEqual(pending(), { services: 3, endpoints: 5 });
  equal(ingest.pending.get("default/a")?.endpointChanges, 3);
});

Deno.test("Ingest keeps trigger times only from EndpointSlices, and only after its start", () => {
  const { ingest, advance, at } = setup();
  const start = at();
  const iso = (t: number) => new Date(t).toISOString();

  ingest.event("Service", "upsert", {
    ...service("a", "10.96.0.1"),
    metadata: { name: "a", namespace: "default", annotations: { [TRIGGER]: iso(start) } },
  });
  equal(ingest.pending.get("default/a")?.triggeredAt, undefined, "Services carry no trigger time");

  ingest.event("EndpointSlice", "upsert", slice("a-1", "a", "10.244.0.1"));
  equal(ingest.pending.get("default/a")?.triggeredAt, undefined, "no annotation: no trigger time");

  // A slice last changed before kpx started: an earlier run programmed it.
  ingest.event("EndpointSlice", "upsert", slice("b-1", "b", "10.244.0.2", iso(start - 60_000)));
  equal(ingest.pending.get("default/b")?.triggeredAt, undefined);

  advance(5000);
  ingest.event("EndpointSlice", "upsert", slice("a-1", "a", "10.244.0.3", iso(start + 3000)));
  ingest.event("EndpointSlice", "upsert", slice("a-2", "a", "10.244.0.4", iso(start + 4000)));
  equal(ingest.pending.get("default/a")?.triggeredAt, start + 3000, "the oldest pending one");
  equal(ingest.pending.get("default/a")?.receivedAt, start, "received with the first change");

  // As kube-proxy, deleting a slice drops the service's trigger times.
  ingest.event("EndpointSlice", "delete", slice("a-2", "a", "10.244.0.4", iso(start + 4000)));
  equal(ingest.pending.get("default/a")?.triggeredAt, undefined);
});
