/**
 * Node ports, LoadBalancer ingress IPs, external IPs and loadBalancerSourceRanges with real
 * packets from the testbed's outside client (192.0.2.100, on the lan with the nodes), through
 * kpx's plan in each node. External traffic under the Cluster policy is masqueraded: the pod
 * sees the address of the node the client went through.
 */
import { deepEqual, ok } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import {
  addAddresses,
  bothProtocols,
  DEPRECATED_V6,
  describeRequest,
  expectFailures,
  expectReplies,
  KpxCluster,
  type PortDef,
  serviceObjects,
} from "./kpx_fixtures.ts";

const ignore = await shouldSkipKernelTests();

/** TCP and UDP port 80 to the pods' 8080, with a node port. */
function web(nodePort: number): PortDef[] {
  return [
    { protocol: "TCP", port: 80, targetPort: 8080, nodePort },
    { protocol: "UDP", port: 80, targetPort: 8080, nodePort },
  ];
}

Deno.test({
  name: "Node ports, LoadBalancer IPs and external IPs serve the outside client",
  ignore,
  async fn(t) {
    await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
    const [pod0a, pod0b, pod1a] = tb.pods as [
      typeof tb.pods[0],
      typeof tb.pods[0],
      typeof tb.pods[0],
    ];
    const [node0, node1] = tb.nodes as [typeof tb.nodes[0], typeof tb.nodes[0]];
    const client = tb.client;
    const kpx = await KpxCluster.start(tb);
    const endpoints = [pod0a.name, pod1a.name];
    const peerOf = (node: typeof node0) => (ip: string) => ip.includes(":") ? node.ipv6 : node.ipv4;

    await t.step(
      "NodePort from the outside client reaches endpoints through each node",
      async () => {
        await kpx.sync(serviceObjects(tb, {
          name: "np",
          type: "NodePort",
          clusterIPs: ["10.96.1.10", "fd00:10:96::1:10"],
          ports: web(30080),
        }, [pod0a, pod1a]));
        for (const node of [node0, node1]) {
          const requests = [1, 2].flatMap(() => bothProtocols([node.ipv4, node.ipv6], 30080));
          const peer = peerOf(node);
          await expectReplies(
            tb,
            client,
            requests,
            (r) => ({ pod: endpoints, peer: peer(r.ip) }),
            `client → ${node.name} node port`,
          );
          // A pod and the node itself use the node port too; both are masqueraded.
          for (const from of [pod0b, node]) {
            await expectReplies(
              tb,
              from,
              bothProtocols([node.ipv4, node.ipv6], 30080),
              (r) => ({ pod: endpoints, peer: peer(r.ip) }),
              `${from.name} → ${node.name} node port`,
            );
          }
        }
      },
    );

    await t.step("nodePortAddresses: a node address outside the list is not DNATed", async () => {
      // A second address on node0, and a server on the node port of node0 itself: it answers
      // whatever kpx leaves alone.
      await addAddresses(tb, node0, "eth0", ["192.0.2.50/24"]);
      await addAddresses(tb, node0, "eth0", ["2001:db8::50/64"], DEPRECATED_V6);
      await tb.startHostEcho(0, { name: "node0-host", ports: [30080] });
      const objects = serviceObjects(tb, {
        name: "np",
        type: "NodePort",
        clusterIPs: ["10.96.1.10", "fd00:10:96::1:10"],
        ports: web(30080),
      }, [pod0a, pod1a]);
      const second = bothProtocols(["192.0.2.50", "2001:db8::50"], 30080);
      const peer = peerOf(node0);

      // By default every node address takes node ports.
      await kpx.sync(objects);
      await expectReplies(
        tb,
        client,
        second,
        (r) => ({ pod: endpoints, peer: peer(r.ip) }),
        "any node address by default",
      );

      kpx.configure({ nodePortAddresses: ["192.0.2.8/29", "2001:db8::10/127"] });
      try {
        const [plan] = await kpx.sync(objects);
        deepEqual(plan?.full, true, "a configuration change is a full plan");
        await expectReplies(
          tb,
          client,
          bothProtocols([node0.ipv4, node0.ipv6], 30080),
          (r) => ({ pod: endpoints, peer: peer(r.ip) }),
          "listed node address",
        );
        // TCP only: the host server's UDP socket answers from the node's primary address,
        // which the client's connected UDP socket does not take for a reply from .50.
        await expectReplies(
          tb,
          client,
          second.filter((r) => r.protocol === "tcp"),
          (r) => ({ pod: "node0-host", peer: r.ip.includes(":") ? client.ipv6 : client.ipv4 }),
          "unlisted node address",
        );
      } finally {
        kpx.configure({});
      }
    });

    await t.step(
      "LoadBalancer ingress IPs and external IPs reach endpoints from outside",
      async () => {
        const lb = ["203.0.113.10", "2001:db8:1b::10"];
        const external = ["203.0.113.20", "2001:db8:1b::20"];
        const proxyMode = ["203.0.113.30", "2001:db8:1b::30"];
        for (const ip of [...lb, ...proxyMode]) await tb.routeViaNode(ip, 0);
        for (const ip of external) await tb.routeViaNode(ip, 1);
        await kpx.sync(serviceObjects(tb, {
          name: "lb",
          type: "LoadBalancer",
          clusterIPs: ["10.96.1.20", "fd00:10:96::1:20"],
          ports: web(30081),
          ingress: [
            ...lb.map((ip) => ({ ip })),
            ...proxyMode.map((ip) => ({ ip, ipMode: "Proxy" as const })),
          ],
          externalIPs: external,
        }, [pod0a, pod1a]));
        const twice = (ips: string[]) => [1, 2].flatMap(() => bothProtocols(ips, 80));
        await expectReplies(
          tb,
          client,
          twice(lb),
          (r) => ({ pod: endpoints, peer: peerOf(node0)(r.ip) }),
          "client → LB IP via node0",
        );
        await expectReplies(
          tb,
          client,
          twice(external),
          (r) => ({ pod: endpoints, peer: peerOf(node1)(r.ip) }),
          "client → external IP via node1",
        );
        // From inside the cluster the same addresses work, masqueraded (Cluster policy).
        await expectReplies(
          tb,
          pod0b,
          bothProtocols([...lb, ...external], 80),
          (r) => ({ pod: endpoints, peer: peerOf(node0)(r.ip) }),
          "pod → LB and external IPs",
        );
        await expectReplies(
          tb,
          node1,
          bothProtocols([...lb, ...external], 80),
          (r) => ({ pod: endpoints, peer: peerOf(node1)(r.ip) }),
          "node → LB and external IPs",
        );
        // An ingress in Proxy mode is the load balancer's own address: not captured on nodes.
        // The node forwards it to the lan, which drops IPv4 and answers IPv6 with "no route"
        // (which TCP, unlike UDP, treats as a soft error and retries until the timeout).
        const requests = bothProtocols(proxyMode, 80, { timeoutMs: 600 });
        (await tb.requestMany(client, requests)).forEach((r, i) => {
          const what = `client → Proxy-mode ingress: ${describeRequest(requests[i]!)}`;
          ok(!r.ok, `${what}: answered ${JSON.stringify(r)}`);
          ok(["timeout", "unreachable"].includes(r.failure), `${what}: ${JSON.stringify(r)}`);
        });
      },
    );

    await t.step(
      "loadBalancerSourceRanges: an allowed source gets through, others are dropped",
      async () => {
        // A second client address outside the ranges.
        await addAddresses(tb, client, "eth0", ["192.0.2.101/24"]);
        await addAddresses(tb, client, "eth0", ["2001:db8::101/64"], DEPRECATED_V6);
        const lb = ["203.0.113.40", "2001:db8:1b::40"];
        for (const ip of lb) await tb.routeViaNode(ip, 1);
        await kpx.sync(serviceObjects(tb, {
          name: "fw",
          type: "LoadBalancer",
          clusterIPs: ["10.96.1.40", "fd00:10:96::1:40"],
          ports: web(30082),
          ingress: lb.map((ip) => ({ ip })),
          loadBalancerSourceRanges: ["192.0.2.100/32", "2001:db8::100/128"],
        }, [pod0a, pod1a]));
        const peer = peerOf(node1);
        await expectReplies(
          tb,
          client,
          bothProtocols(lb, 80),
          (r) => ({ pod: endpoints, peer: peer(r.ip) }),
          "allowed source → LB IP",
        );
        const fromOther = (ip: string) => ip.includes(":") ? "2001:db8::101" : "192.0.2.101";
        const quick = { timeoutMs: 600 };
        await expectFailures(
          tb,
          client,
          lb.flatMap((ip) => bothProtocols([ip], 80, { ...quick, sourceIp: fromOther(ip) })),
          "timeout",
          "other source → LB IP",
        );
        await expectFailures(
          tb,
          pod0b,
          bothProtocols(lb, 80, quick),
          "timeout",
          "pod outside the ranges → LB IP",
        );
        // The ranges guard the LB IPs only: the node port and the ClusterIP stay open.
        await expectReplies(
          tb,
          client,
          [node1.ipv4, node1.ipv6].flatMap((ip) =>
            bothProtocols([ip], 30082, { sourceIp: fromOther(ip) })
          ),
          (r) => ({ pod: endpoints, peer: peer(r.ip) }),
          "other source → node port",
        );
        await expectReplies(
          tb,
          pod0b,
          bothProtocols(["10.96.1.40", "fd00:10:96::1:40"], 80),
          (r) => ({ pod: endpoints, peer: r.ip.includes(":") ? pod0b.ipv6 : pod0b.ipv4 }),
          "pod → ClusterIP of the same service",
        );
      },
    );
  },
});
