/**
 * ClientIP session affinity with real packets: a ClusterIP (IPv4 and IPv6, TCP and UDP) with
 * three endpoints and `sessionAffinityConfig.clientIP.timeoutSeconds` of 2 s. A client's new
 * connections all reach one endpoint while it keeps coming back; after more than the timeout
 * without traffic it is balanced afresh.
 *
 * node0 with pod0a (the client), pod0b; node1 with pod1a, pod1b. Endpoints: pod0b, pod1a, pod1b.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { type ProbeRequest, shouldSkipKernelTests, Testbed } from "./mod.ts";
import {
  describeRequest,
  expectReply,
  KpxCluster,
  type PortDef,
  serviceObjects,
  SourcePorts,
  tally,
} from "./kpx_fixtures.ts";

const ignore = await shouldSkipKernelTests();

const WEB: readonly PortDef[] = [
  { protocol: "TCP", port: 80, targetPort: 8080 },
  { protocol: "UDP", port: 80, targetPort: 8080 },
];
const IPS = ["10.96.0.20", "fd00:10:96::20"] as const;
const TIMEOUT_S = 2;
/** Quiet time between expiry rounds: the timeout plus a margin for timer granularity. */
const QUIET_MS = TIMEOUT_S * 1000 + 500;
/**
 * Expiry rounds. With the affinity expired, each round's endpoint is a fresh uniform pick of
 * 3, so all rounds agree with the first with probability 3^-(ROUNDS-1) = 3^-10 ≈ 1.7e-5 per
 * (protocol, family); over the 4 of them, a correct kpx fails the step with probability
 * ≤ 6.8e-5.
 */
const ROUNDS = 11;

/** The four (protocol, family) pairs; each has its own affinity, as a service port per family. */
const FLOWS: readonly { protocol: "tcp" | "udp"; ip: string }[] = IPS.flatMap((ip) =>
  (["tcp", "udp"] as const).map((protocol) => ({ protocol, ip }))
);

function flowKey(r: { protocol: string; ip: string }): string {
  return `${r.protocol} ${r.ip}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test({
  name: "ClientIP affinity keeps a client on one endpoint and releases it after the timeout",
  ignore,
  async fn(t) {
    await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
    const [client, ...endpoints] = tb.pods;
    ok(client && endpoints.length === 3, "testbed pods");
    const names = endpoints.map((p) => p.name);
    const kpx = await KpxCluster.start(tb);
    await kpx.sync(serviceObjects(tb, {
      name: "sticky",
      clusterIPs: IPS,
      ports: WEB,
      affinitySeconds: TIMEOUT_S,
    }, endpoints));
    // Every UDP request gets a port no earlier one used: a reused port would follow its old
    // conntrack entry, not the affinity.
    const ports = new SourcePorts();
    /**
     * Sends `perFlow` requests per flow, `concurrency` at a time; asserts that every one is
     * answered and that each flow's all reached one endpoint, which it returns by flow.
     */
    const round = async (perFlow: number, concurrency: number): Promise<Map<string, string>> => {
      const sent: ProbeRequest[] = Array.from({ length: perFlow }, () =>
        FLOWS.map((f) => ({
          ...f,
          port: 80,
          ...(f.protocol === "udp" ? { sourcePort: ports.next() } : {}),
        }))).flat();
      const results = await tb.requestMany(client, sent, { concurrency });
      const replies = results.map((r, i) =>
        expectReply(r, { pod: names }, `${client.name} ${describeRequest(sent[i]!)}`)
      );
      const out = new Map<string, string>();
      for (const flow of FLOWS) {
        const key = flowKey(flow);
        const who = tally(replies.filter((_, i) => flowKey(sent[i]!) === key));
        equal(who.size, 1, `${key}: ${perFlow} requests reached ${JSON.stringify([...who])}`);
        out.set(key, [...who.keys()][0]!);
      }
      return out;
    };

    await t.step("a client's new connections all reach the same endpoint", async () => {
      // One request per flow first, one at a time: connections that race in before the first
      // one recorded the client may be balanced independently (kube-proxy's too).
      const first = await round(1, 1);
      // Then 30 per flow, 16 in flight: without affinity all 30 agreeing has probability 3^-29.
      const next = await round(30, 16);
      deepEqual(next, first, "the same endpoint as the first connection");
    });

    await t.step(
      "after more than the timeout without traffic the client is balanced afresh",
      async () => {
        const seen = new Map<string, string[]>(FLOWS.map((f) => [flowKey(f), []]));
        for (let r = 0; r < ROUNDS; r++) {
          await sleep(QUIET_MS);
          // Four per flow, one at a time, so each round also shows that the new pick sticks.
          for (const [key, pod] of await round(4, 1)) seen.get(key)!.push(pod);
        }
        for (const [key, pods] of seen) {
          console.log(`    ${key}: ${pods.join(" ")}`);
          ok(new Set(pods).size > 1, `${key}: every round after the timeout reached ${pods[0]}`);
        }
      },
    );
  },
});
