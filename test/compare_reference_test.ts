/**
 * The benchmark's measuring sticks are valid: each generated kube-proxy
 * layout (bench/reference/) loads into a real node namespace and passes
 * traffic — a pod reaching a ClusterIP, an outside client reaching a NodePort,
 * both DNATed to the service's endpoints — and its one-service change moves
 * new connections to the new endpoints. Small scale: the target service plus
 * 20 synthetic ones.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import {
  kubeIptablesChange,
  kubeIptablesFull,
  kubeNftablesChange,
  kubeNftablesFull,
  REFERENCE_OPTIONS,
} from "../bench/reference/mod.ts";
import { syntheticService, syntheticServices } from "../bench/synthetic.ts";
import type { Service } from "../src/state/mod.ts";
import { type PodHandle, type ProbeRequest, shouldSkipKernelTests, Testbed } from "./e2e/mod.ts";

const CLUSTER_IP = "10.95.0.1";
const NODE_PORT = 30999;

function target(endpoints: readonly PodHandle[]): Service {
  return {
    ...syntheticService(0, 0),
    id: "bench/target",
    name: "target",
    clusterIPs: [CLUSTER_IP],
    ports: [{
      name: "http",
      protocol: "TCP",
      port: 80,
      nodePort: NODE_PORT,
      endpoints: endpoints.map((p) => ({
        address: p.ipv4,
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        nodeName: "node0",
        zoneHints: [],
        nodeHints: [],
      })),
    }],
  };
}

interface Reference {
  name: string;
  /** argv loading text on stdin into the node namespace. */
  load: string[];
  full(services: Service[]): string;
  /** The change's transaction(s), in order. */
  change(old: Service, now: Service, all: Service[]): string[];
  /** argv and stdin that empty the ruleset again. */
  flush: [string[], string];
}

const REFERENCES: Reference[] = [
  {
    name: "kube-proxy nftables",
    load: ["nft", "-f", "-"],
    full: (s) => kubeNftablesFull(s, REFERENCE_OPTIONS),
    change: (old, now) => {
      const tx = kubeNftablesChange(old, now, REFERENCE_OPTIONS);
      // The later stale-chain deletion must be a valid transaction too.
      return [tx.apply, tx.cleanup];
    },
    flush: [["nft", "-f", "-"], "flush ruleset\n"],
  },
  ...(["nft", "legacy"] as const).map((backend): Reference => ({
    name: `kube-proxy iptables (iptables-${backend})`,
    load: [`iptables-${backend}-restore`, "--noflush", "--counters"],
    full: (s) => kubeIptablesFull(s, REFERENCE_OPTIONS),
    change: (_old, now, all) => [kubeIptablesChange(all, now, REFERENCE_OPTIONS)],
    flush: [[`iptables-${backend}-restore`], "*nat\nCOMMIT\n*filter\nCOMMIT\n"],
  })),
];

async function load(tb: Testbed, argv: string[], text: string, what: string): Promise<void> {
  if (text === "") return;
  const r = await tb.exec(0, argv, { stdin: text, timeoutMs: 30_000 });
  equal(r.code, 0, `${what}: ${argv[0]} failed: ${r.stderr.slice(0, 500)}`);
}

/** Names of the pods that answered `count` TCP requests (all must succeed). */
async function answers(
  tb: Testbed,
  from: PodHandle | Testbed["client"],
  req: ProbeRequest,
  count: number,
): Promise<Set<string>> {
  const results = await tb.requestMany(from, Array.from({ length: count }, () => req), {
    concurrency: 4,
  });
  const pods = new Set<string>();
  for (const r of results) {
    ok(r.ok, `request to ${req.ip}:${req.port} failed: ${JSON.stringify(r)}`);
    pods.add(r.pod);
  }
  return pods;
}

Deno.test({
  name:
    "every kube-proxy reference layout loads, DNATs ClusterIP and NodePort traffic, and applies a change",
  ignore: await shouldSkipKernelTests(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 3, echoPorts: [8080] });
    const [client, a, b] = tb.pods as [PodHandle, PodHandle, PodHandle];
    const node = tb.node(0);
    const both = target([a, b]);
    const onlyB = target([b]);
    const services = [both, ...syntheticServices(20, 10)];
    const clusterIP: ProbeRequest = { ip: CLUSTER_IP, port: 80, protocol: "tcp", timeoutMs: 2000 };
    const nodePort: ProbeRequest = {
      ip: node.ipv4,
      port: NODE_PORT,
      protocol: "tcp",
      timeoutMs: 2000,
    };
    for (const ref of REFERENCES) {
      await t.step(ref.name, async () => {
        await load(tb, ref.load, ref.full(services), `load ${ref.name}`);
        try {
          // 24 random picks between two endpoints all landing on one: p = 2^-23.
          deepEqual(await answers(tb, client, clusterIP, 24), new Set([a.name, b.name]));
          deepEqual(await answers(tb, tb.client, nodePort, 24), new Set([a.name, b.name]));
          const after = [onlyB, ...services.slice(1)];
          for (const tx of ref.change(both, onlyB, after)) {
            await load(tb, ref.load, tx, `apply ${ref.name}'s change`);
          }
          deepEqual(await answers(tb, client, clusterIP, 8), new Set([b.name]));
          deepEqual(await answers(tb, tb.client, nodePort, 8), new Set([b.name]));
        } finally {
          await load(tb, ref.flush[0], ref.flush[1], `flush ${ref.name}`);
        }
      });
    }
  },
});
