/**
 * Synthetic clusters for benchmarks: N ClusterIP services x E endpoints, as
 * planner Services (already joined), built directly for speed and
 * reproducibility. Every 10th service is a NodePort, so both key shapes load.
 */
import type { Service } from "../src/state/mod.ts";

export function syntheticServices(
  n: number,
  endpoints: number,
  opts: { nodePortEvery?: number } = {},
): Service[] {
  const out: Service[] = [];
  const every = opts.nodePortEvery ?? 10;
  // Node ports must be unique: 30000-32767 holds 2768 of them.
  const np = (i: number) => every > 0 && i % every === 0 && i / every < 2768;
  for (let i = 0; i < n; i++) out.push(syntheticService(i, endpoints, np(i), 0, every));
  return out;
}

export function syntheticService(
  i: number,
  endpoints: number,
  nodePort = false,
  version = 0,
  nodePortEvery = 10,
): Service {
  const eps = [];
  for (let e = 0; e < endpoints; e++) {
    const k = i * endpoints + e + version;
    eps.push({
      address: `10.${64 + (k >> 16 & 63)}.${k >> 8 & 255}.${k & 255}`,
      port: 8080,
      ready: true,
      serving: true,
      terminating: false,
      nodeName: e === 0 ? "node-a" : `node-${e % 50}`,
      zoneHints: [],
      nodeHints: [],
    });
  }
  return {
    namespace: "bench",
    name: `svc-${i}`,
    id: `bench/svc-${i}`,
    clusterIPs: [`10.${96 + (i >> 16)}.${i >> 8 & 255}.${i & 255}`],
    externalIPs: [],
    loadBalancerIPs: [],
    firewallSourceRanges: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    affinitySeconds: 0,
    healthCheckNodePort: 0,
    ports: [{
      name: "http",
      protocol: "TCP",
      port: 80,
      nodePort: nodePort ? 30000 + Math.floor(i / nodePortEvery) : 0,
      endpoints: eps,
    }],
  };
}
