/**
 * The daemon benchmark's cluster, as Kubernetes objects: services of one TCP
 * port, each with one EndpointSlice of ten endpoints (one of them on this
 * node), shaped as the EndpointSlice controller writes them (conditions,
 * targetRef, managed-by label), and this node.
 */
export const BENCH_ENDPOINTS = 10;
export const BENCH_NODE = "node-a";

export function benchNode(): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: BENCH_NODE },
    spec: { podCIDRs: ["10.64.0.0/24"] },
    status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] },
  };
}

export function benchService(i: number): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: `svc-${i}`, namespace: "bench" },
    spec: {
      clusterIP: `10.${96 + (i >> 16)}.${i >> 8 & 255}.${i & 255}`,
      ports: [{ name: "http", port: 80, protocol: "TCP" }],
    },
  };
}

/** Service i's slice; another `version` moves every endpoint to other addresses. */
export function benchSlice(i: number, version: number): Record<string, unknown> {
  const endpoints = [];
  for (let e = 0; e < BENCH_ENDPOINTS; e++) {
    const k = i * BENCH_ENDPOINTS + e + version;
    endpoints.push({
      addresses: [`10.${64 + (k >> 16 & 63)}.${k >> 8 & 255}.${k & 255}`],
      nodeName: e === 0 ? BENCH_NODE : `node-${e}`,
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: "Pod", namespace: "bench", name: `svc-${i}-pod-${e}` },
    });
  }
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `svc-${i}-abc`,
      namespace: "bench",
      labels: {
        "kubernetes.io/service-name": `svc-${i}`,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
      },
    },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    endpoints,
  };
}
