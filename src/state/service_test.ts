import { deepEqual, equal, throws } from "node:assert/strict";
import { ClusterState, InvalidObjectError, parseEndpointSlice, parseService } from "./mod.ts";

const svc = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: "prod", ...(extra["metadata"] as object ?? {}) },
  spec: { clusterIP: "10.96.0.10", ports: [{ port: 80 }], ...spec },
  ...(extra["status"] ? { status: extra["status"] } : {}),
});

function spec(o: unknown) {
  const r = parseService(o);
  if (r.kind !== "service") throw new Error(`ignored: ${r.reason}`);
  return r.spec;
}

Deno.test("parseService() ignores headless, ExternalName and other proxies' services", () => {
  equal(parseService(svc({ clusterIP: "None" })).kind, "ignored");
  equal(parseService(svc({ type: "ExternalName", externalName: "x.example" })).kind, "ignored");
  equal(
    parseService(
      svc({}, { metadata: { labels: { "service.kubernetes.io/service-proxy-name": "other" } } }),
    ).kind,
    "ignored",
  );
});

Deno.test("parseService() applies the external policy only to externally reachable services", () => {
  equal(
    spec(svc({ externalTrafficPolicy: "Local" })).externalTrafficLocal,
    false,
    "plain ClusterIP",
  );
  equal(
    spec(svc({ externalTrafficPolicy: "Local", externalIPs: ["198.51.100.1"] }))
      .externalTrafficLocal,
    true,
    "ClusterIP with externalIPs",
  );
  equal(spec(svc({ type: "NodePort", externalTrafficPolicy: "Local" })).externalTrafficLocal, true);
  equal(spec(svc({ internalTrafficPolicy: "Local" })).internalTrafficLocal, true);
});

Deno.test("parseService() reads ClientIP affinity with kube-proxy's default and limits", () => {
  equal(spec(svc({ sessionAffinity: "ClientIP" })).affinitySeconds, 10800);
  equal(
    spec(
      svc({
        sessionAffinity: "ClientIP",
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 5 } },
      }),
    ).affinitySeconds,
    5,
  );
  throws(
    () =>
      parseService(
        svc({
          sessionAffinity: "ClientIP",
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } },
        }),
      ),
    /timeoutSeconds 86401 is out of range/,
  );
});

Deno.test("parseService() takes VIP-mode LB ingress IPs, and gives each address one role", () => {
  const s = spec(
    svc({ type: "LoadBalancer", externalIPs: ["203.0.113.1", "10.96.0.10", "198.51.100.1"] }, {
      status: {
        loadBalancer: {
          ingress: [{ ip: "203.0.113.1" }, { ip: "203.0.113.2", ipMode: "Proxy" }, {
            hostname: "lb.example",
          }],
        },
      },
    }),
  );
  deepEqual(s.loadBalancerIPs, ["203.0.113.1"]);
  deepEqual(s.externalIPs, ["198.51.100.1"], "the ClusterIP and the LB IP are not external IPs");
  deepEqual(
    spec(
      svc({ type: "ClusterIP" }, {
        status: { loadBalancer: { ingress: [{ ip: "203.0.113.1" }] } },
      }),
    ).loadBalancerIPs,
    [],
  );
});

Deno.test("parseService() rejects what would break the rules, naming the object", () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ clusterIPs: ["10.96.0.10", "10.96.0.11"] }, /two IPv4 addresses/],
    [{ ports: [{ port: 80 }, { port: 80 }] }, /duplicate port name ""/],
    [{ ports: [{ name: "a", port: 80 }, { name: "b", port: 80 }] }, /duplicate port TCP\/80/],
    [{
      type: "NodePort",
      ports: [{ name: "a", port: 80, nodePort: 30000 }, { name: "b", port: 81, nodePort: 30000 }],
    }, /duplicate nodePort/],
    [{ ports: [{ name: "Bad_Name", port: 80 }] }, /not a valid port name/],
    [
      { loadBalancerSourceRanges: ["10.0.0.0/40"] },
      /loadBalancerSourceRanges: "10.0.0.0\/40" is not a CIDR/,
    ],
    [{ type: "Balancer" }, /unknown type "Balancer"/],
  ];
  for (const [s, re] of cases) {
    throws(
      () => parseService(svc(s)),
      (e: Error) =>
        e instanceof InvalidObjectError && e.message.startsWith("Cannot use Service prod/web:") &&
        re.test(e.message),
      String(re),
    );
  }
  throws(
    () =>
      parseService({
        metadata: { name: "Web", namespace: "prod" },
        spec: { clusterIP: "10.96.0.1", ports: [{ port: 1 }] },
      }),
    /not a DNS-1035 label/,
  );
});

Deno.test("parseEndpointSlice() reads conditions with the API's defaults", () => {
  const r = parseEndpointSlice({
    metadata: { name: "web-1", namespace: "prod", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080 }, { name: "none" }],
    endpoints: [
      { addresses: ["10.0.0.1"] },
      {
        addresses: ["10.0.0.2"],
        conditions: { ready: false, serving: true, terminating: true },
        hints: { forZones: [{ name: "z1" }] },
      },
    ],
  });
  if (r.kind !== "slice") throw new Error("ignored");
  deepEqual(
    r.spec.ports,
    [{ name: "http", protocol: "TCP", port: 8080 }],
    "a nil port gives no endpoints",
  );
  deepEqual([
    r.spec.endpoints.at(0).ready,
    r.spec.endpoints.at(0).serving,
    r.spec.endpoints.at(0).terminating,
  ], [true, true, false]);
  deepEqual(r.spec.endpoints.at(1).zoneHints, ["z1"]);
  equal(r.spec.endpoints.length, 2);
  equal(
    parseEndpointSlice({ metadata: { name: "x", namespace: "prod" }, addressType: "IPv4" }).kind,
    "ignored",
  );
  throws(
    () =>
      parseEndpointSlice({
        metadata: { name: "x", namespace: "prod", labels: { "kubernetes.io/service-name": "web" } },
        addressType: "IPv6",
        endpoints: [{ addresses: ["10.0.0.1"] }],
      }),
    /is not an IPv6 address/,
  );
});

Deno.test("ClusterState: the first service by name keeps a contested destination, the other follows when it goes", () => {
  const st = new ClusterState("node-a");
  const a = spec({
    ...svc({ externalIPs: ["198.51.100.7"] }),
    metadata: { name: "alpha", namespace: "prod" },
  });
  const b = spec({
    ...svc({ clusterIP: "10.96.0.11", externalIPs: ["198.51.100.7"] }),
    metadata: { name: "beta", namespace: "prod" },
  });
  st.upsertService(b);
  st.takeChanges();
  st.upsertService(a);
  deepEqual(st.takeChanges().services, ["prod/alpha", "prod/beta"], "the loser is re-planned too");
  equal(st.service("prod/beta"), null);
  equal(
    st.conflict("prod/beta")!.message,
    "Cannot program Service prod/beta: 198.51.100.7:80/tcp is already used by Service prod/alpha",
  );
  st.deleteService("prod/alpha");
  deepEqual(st.takeChanges().services, ["prod/alpha", "prod/beta"]);
  equal(st.service("prod/beta")!.externalIPs[0], "198.51.100.7");
});
