/**
 * Traffic policies and endpoint conditions with real packets across two nodes:
 * internalTrafficPolicy Local, externalTrafficPolicy Local (client IP kept, remote-only nodes
 * drop external traffic but short-circuit the cluster's own), and the fallback to endpoints
 * that are terminating but still serving.
 *
 * node0 192.0.2.10 with pod0a, pod0b; node1 192.0.2.11 with pod1a, pod1b; the client
 * 192.0.2.100 reaches LB IPs through the node it routes them to.
 */
import { deepEqual } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import {
  bothProtocols,
  expectFailures,
  expectReplies,
  KpxCluster,
  type PortDef,
  serviceObjects,
  tally,
  terminating,
} from "./kpx_fixtures.ts";

const ignore = await shouldSkipKernelTests();

function web(nodePort?: number): PortDef[] {
  return (["TCP", "UDP"] as const).map((protocol) => ({
    protocol,
    port: 80,
    targetPort: 8080,
    ...(nodePort === undefined ? {} : { nodePort }),
  }));
}

/** `n` rounds of TCP and UDP to each address. */
function rounds(n: number, ips: readonly string[], port: number) {
  return Array.from({ length: n }, () => bothProtocols(ips, port)).flat();
}

Deno.test({
  name: "Traffic policies and terminating endpoints decide which pods answer",
  ignore,
  async fn(t) {
    await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
    const [pod0a, pod0b, pod1a, pod1b] = tb.pods as [
      typeof tb.pods[0],
      typeof tb.pods[0],
      typeof tb.pods[0],
      typeof tb.pods[0],
    ];
    const [node0, node1] = tb.nodes as [typeof tb.nodes[0], typeof tb.nodes[0]];
    const client = tb.client;
    const kpx = await KpxCluster.start(tb);
    const own = (who: { ipv4: string; ipv6: string }) => (ip: string) =>
      ip.includes(":") ? who.ipv6 : who.ipv4;

    await t.step("internalTrafficPolicy Local keeps traffic on the sender's node", async () => {
      const ips = ["10.96.2.10", "fd00:10:96::2:10"];
      const remoteOnly = ["10.96.2.11", "fd00:10:96::2:11"];
      await kpx.sync([
        ...serviceObjects(tb, {
          name: "itp",
          clusterIPs: ips,
          ports: web(),
          internalTrafficPolicy: "Local",
        }, [pod0a, pod1a]),
        ...serviceObjects(tb, {
          name: "itp-remote",
          clusterIPs: remoteOnly,
          ports: web(),
          internalTrafficPolicy: "Local",
        }, [pod1a]),
      ]);
      // Eight tries each: a Cluster policy would send half of them to the other node.
      await expectReplies(tb, pod0b, rounds(4, ips, 80), (r) => ({
        pod: pod0a.name,
        peer: own(pod0b)(r.ip),
      }), "node0's pod");
      await expectReplies(tb, pod1b, rounds(4, ips, 80), (r) => ({
        pod: pod1a.name,
        peer: own(pod1b)(r.ip),
      }), "node1's pod");
      await expectReplies(tb, node0, rounds(2, ips, 80), (r) => ({
        pod: pod0a.name,
        peer: own(node0)(r.ip),
      }), "node0 itself");
      // No endpoint on node0: its pods' traffic is dropped, node1's is served.
      await expectFailures(
        tb,
        pod0b,
        bothProtocols(remoteOnly, 80, { timeoutMs: 600 }),
        "timeout",
        "iTP Local, no local endpoint",
      );
      await expectReplies(tb, pod1b, bothProtocols(remoteOnly, 80), (r) => ({
        pod: pod1a.name,
        peer: own(pod1b)(r.ip),
      }), "iTP Local, local endpoint");
    });

    const lb = ["203.0.113.60", "2001:db8:1b::60"];
    const etpLocal = (endpoints: Parameters<typeof serviceObjects>[2]) =>
      serviceObjects(tb, {
        name: "etp",
        type: "LoadBalancer",
        clusterIPs: ["10.96.2.60", "fd00:10:96::2:60"],
        ports: web(30090),
        ingress: lb.map((ip) => ({ ip })),
        externalTrafficPolicy: "Local",
      }, endpoints);
    const node0Pods = [pod0a.name, pod0b.name];

    await t.step(
      "externalTrafficPolicy Local keeps the client IP at a node with an endpoint",
      async () => {
        await kpx.sync(etpLocal([pod0a, pod0b]));
        for (const ip of lb) await tb.routeViaNode(ip, 0);
        await expectReplies(
          tb,
          client,
          [...rounds(2, lb, 80), ...rounds(2, [node0.ipv4, node0.ipv6], 30090)],
          (r) => ({ pod: node0Pods, peer: own(client)(r.ip) }),
          "client → node0 (local endpoints)",
        );
      },
    );

    await t.step(
      "externalTrafficPolicy Local: a node without endpoints drops external traffic, serves the cluster's",
      async () => {
        await kpx.sync(etpLocal([pod0a, pod0b]));
        for (const ip of lb) await tb.routeViaNode(ip, 1);
        await expectFailures(
          tb,
          client,
          [
            ...bothProtocols(lb, 80, { timeoutMs: 600 }),
            ...bothProtocols([node1.ipv4, node1.ipv6], 30090, { timeoutMs: 600 }),
          ],
          "timeout",
          "client → node1 (no local endpoint)",
        );
        // Pods on node1 are short-circuited to the cluster-wide endpoints, unmasqueraded…
        await expectReplies(
          tb,
          pod1a,
          [...bothProtocols(lb, 80), ...bothProtocols([node1.ipv4, node1.ipv6], 30090)],
          (r) => ({ pod: node0Pods, peer: own(pod1a)(r.ip) }),
          "pod on node1 → LB IP and node port",
        );
        // …node1 itself too, masqueraded…
        await expectReplies(
          tb,
          node1,
          bothProtocols(lb, 80),
          (r) => ({ pod: node0Pods, peer: own(node1)(r.ip) }),
          "node1 → LB IP",
        );
        // …and the ClusterIP follows the internal policy (Cluster).
        await expectReplies(
          tb,
          pod1b,
          bothProtocols(["10.96.2.60", "fd00:10:96::2:60"], 80),
          (r) => ({ pod: node0Pods, peer: own(pod1b)(r.ip) }),
          "pod on node1 → ClusterIP",
        );
      },
    );

    await t.step(
      "externalTrafficPolicy Local falls back to a local endpoint that is terminating",
      async () => {
        // node0: only a terminating (still serving) endpoint; node1: a ready one.
        await kpx.sync(etpLocal([terminating(pod0a), pod1a]));
        for (const ip of lb) await tb.routeViaNode(ip, 0);
        await expectReplies(
          tb,
          client,
          bothProtocols(lb, 80),
          (r) => ({ pod: pod0a.name, peer: own(client)(r.ip) }),
          "client → node0",
        );
        for (const ip of lb) await tb.routeViaNode(ip, 1);
        await expectReplies(
          tb,
          client,
          rounds(2, lb, 80),
          (r) => ({ pod: pod1a.name, peer: own(client)(r.ip) }),
          "client → node1",
        );
      },
    );

    await t.step(
      "terminating endpoints serve while none is ready; then only the ready one",
      async () => {
        const ips = ["10.96.2.70", "fd00:10:96::2:70"];
        const service = {
          name: "term",
          clusterIPs: ips,
          ports: web(),
        };
        // pod1b is terminating and no longer serving: never used.
        await kpx.sync(serviceObjects(tb, service, [
          terminating(pod0a),
          terminating(pod1a),
          terminating(pod1b, false),
        ]));
        const requests = rounds(6, ips, 80);
        const before = await expectReplies(
          tb,
          pod0b,
          requests,
          (r) => ({ pod: [pod0a.name, pod1a.name], peer: own(pod0b)(r.ip) }),
          "only terminating endpoints",
        );
        // Both serving ones are used (24 tries: probability 1 - 2^-23).
        deepEqual([...tally(before).keys()].sort(), [pod0a.name, pod1a.name]);

        const [plan] = await kpx.sync(serviceObjects(tb, service, [
          terminating(pod0a),
          terminating(pod1a),
          pod1b,
        ]));
        deepEqual(plan?.full, false, "an endpoint change is a delta");
        await expectReplies(
          tb,
          pod0b,
          requests,
          (r) => ({ pod: pod1b.name, peer: own(pod0b)(r.ip) }),
          "a ready endpoint exists",
        );
      },
    );
  },
});
