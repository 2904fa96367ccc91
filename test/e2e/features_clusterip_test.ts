/**
 * ClusterIP services with real packets: kpx plans each node of a two-node testbed, the plan is
 * loaded into the node's namespace, and pods, the nodes and an outside client send TCP and UDP
 * over IPv4 and IPv6. Who answered and the peer address the pod saw tell DNAT and masquerade
 * apart; "refused" (RST / ICMP port unreachable) and "timeout" tell reject from drop.
 *
 * Topology (see testbed.ts): node0 192.0.2.10 with pod0a .0.2, pod0b .0.3; node1 192.0.2.11
 * with pod1a .1.2, pod1b .1.3; client 192.0.2.100 routes the service CIDRs via node0.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import {
  addAddresses,
  binomialInterval,
  bothProtocols,
  DEPRECATED_V6,
  expectFailures,
  expectReplies,
  KpxCluster,
  type KubeObject,
  type PortDef,
  SERVICE_CIDR_V4,
  SERVICE_CIDR_V6,
  serviceCIDRObject,
  serviceObjects,
  tally,
} from "./kpx_fixtures.ts";

const ignore = await shouldSkipKernelTests();

/** TCP and UDP port 80 to the pods' 8080. */
const WEB: readonly PortDef[] = [
  { protocol: "TCP", port: 80, targetPort: 8080 },
  { protocol: "UDP", port: 80, targetPort: 8080 },
];
const WEB_V4 = "10.96.0.10";
const WEB_V6 = "fd00:10:96::10";

/** Extra node0 addresses that probes bind to: the pod sees them unless masqueraded. */
const NODE0_EXTRA_V4 = "198.51.100.1";
const NODE0_EXTRA_V6 = "2001:db8:ff::1";

Deno.test({
  name: "ClusterIP services carry real TCP and UDP traffic over IPv4 and IPv6",
  ignore,
  async fn(t) {
    await using tb = await Testbed.create({
      nodes: 2,
      podsPerNode: 2,
      echoPorts: [80, 8080, 5353],
    });
    const [pod0a, pod0b, pod1a, pod1b] = tb.pods as [
      typeof tb.pods[0],
      typeof tb.pods[0],
      typeof tb.pods[0],
      typeof tb.pods[0],
    ];
    const [node0, node1] = tb.nodes as [typeof tb.nodes[0], typeof tb.nodes[0]];
    await addAddresses(tb, node0, "eth0", [`${NODE0_EXTRA_V4}/32`]);
    await addAddresses(tb, node0, "eth0", [`${NODE0_EXTRA_V6}/128`], DEPRECATED_V6);
    await tb.routeViaNode(SERVICE_CIDR_V4, 0);
    await tb.routeViaNode(SERVICE_CIDR_V6, 0);
    const kpx = await KpxCluster.start(tb);
    const web = (endpoints = [pod0a, pod1a]): KubeObject[] =>
      serviceObjects(tb, { name: "web", clusterIPs: [WEB_V4, WEB_V6], ports: WEB }, endpoints);

    await t.step(
      "ClusterIP from a pod reaches a ready endpoint, source not masqueraded",
      async () => {
        await kpx.sync(web());
        for (const from of [pod0b, pod1b]) {
          // Four rounds, so both endpoints (on this node and on the other) are likely exercised.
          const requests = Array.from({ length: 4 }, () => bothProtocols([WEB_V4, WEB_V6], 80))
            .flat();
          const replies = await expectReplies(
            tb,
            from,
            requests,
            (r) => ({
              pod: [pod0a.name, pod1a.name],
              peer: r.ip === WEB_V4 ? from.ipv4 : from.ipv6,
            }),
            "pod → ClusterIP",
          );
          equal(replies.length, 16);
        }
      },
    );

    await t.step(
      "ClusterIP from the node itself is masqueraded to the node's address",
      async () => {
        await kpx.sync(web());
        // Bound to an extra node address: without masquerading the pod would see that address.
        const requests = Array.from({ length: 4 }, () => [
          ...bothProtocols([WEB_V4], 80, { sourceIp: NODE0_EXTRA_V4 }),
          ...bothProtocols([WEB_V6], 80, { sourceIp: NODE0_EXTRA_V6 }),
        ]).flat();
        await expectReplies(
          tb,
          node0,
          requests,
          (r) => ({
            pod: [pod0a.name, pod1a.name],
            peer: r.ip === WEB_V4 ? node0.ipv4 : node0.ipv6,
          }),
          "node → ClusterIP",
        );
        // The same addresses sent from a pod are not the node's: no masquerade there (see above).
      },
    );

    await t.step("ClusterIP from outside the cluster is masqueraded by the node", async () => {
      await kpx.sync(web());
      await expectReplies(
        tb,
        tb.client,
        bothProtocols([WEB_V4, WEB_V6], 80),
        (r) => ({ pod: [pod0a.name, pod1a.name], peer: r.ip === WEB_V4 ? node0.ipv4 : node0.ipv6 }),
        "client → ClusterIP via node0",
      );
    });

    await t.step("a DNS-like service answers on port 53 over UDP and TCP", async () => {
      const dns = serviceObjects(tb, {
        name: "dns",
        clusterIPs: ["10.96.0.53", "fd00:10:96::53"],
        ports: [
          { name: "dns", protocol: "UDP", port: 53, targetPort: 5353 },
          { name: "dns-tcp", protocol: "TCP", port: 53, targetPort: 5353 },
        ],
      }, [pod0a, pod1b]);
      await kpx.sync(dns);
      const requests = Array.from(
        { length: 3 },
        () => bothProtocols(["10.96.0.53", "fd00:10:96::53"], 53),
      ).flat();
      await expectReplies(
        tb,
        pod0b,
        requests,
        (r) => ({
          pod: [pod0a.name, pod1b.name],
          peer: r.ip.includes(":") ? pod0b.ipv6 : pod0b.ipv4,
        }),
        "pod → DNS ClusterIP",
      );
    });

    await t.step("an IPv6-only NodePort service answers on IPv6 only", async () => {
      const nodePort = 30060;
      // Something on node0 listens on the node port itself: it answers what kpx does not DNAT.
      await tb.startHostEcho(0, { name: "node0-host", ports: [nodePort] });
      await kpx.sync(serviceObjects(tb, {
        name: "v6only",
        type: "NodePort",
        clusterIPs: ["fd00:10:96::60"],
        ports: WEB.map((p) => ({ ...p, nodePort })),
      }, [pod0a, pod1a]));
      const pods = [pod0a.name, pod1a.name];
      await expectReplies(
        tb,
        pod1b,
        bothProtocols(["fd00:10:96::60"], 80),
        () => ({ pod: pods, peer: pod1b.ipv6 }),
        "pod → IPv6 ClusterIP",
      );
      for (const node of [node0, node1]) {
        await expectReplies(
          tb,
          tb.client,
          bothProtocols([node.ipv6], nodePort),
          () => ({ pod: pods, peer: node.ipv6 }),
          `client → ${node.name} IPv6 node port`,
        );
      }
      await expectReplies(
        tb,
        tb.client,
        bothProtocols([node0.ipv4], nodePort),
        () => ({ pod: "node0-host", peer: tb.client.ipv4 }),
        "client → node0 IPv4 node port (no IPv4 service, not DNATed)",
      );
    });

    await t.step("connections spread uniformly over 3 endpoints (binomial bound)", async () => {
      const endpoints = [pod0a, pod1a, pod1b];
      await kpx.sync(serviceObjects(tb, {
        name: "spread",
        clusterIPs: ["10.96.0.30", "fd00:10:96::30"],
        ports: WEB,
      }, endpoints));
      const n = 300;
      // Six counts (3 endpoints × 2 families), each must fall in its interval; by the union
      // bound a correct uniform pick fails this step with probability ≤ 6 × 1e-6/6 = 1e-6.
      const [low, high] = binomialInterval(n, 1 / 3, 1e-6 / 6);
      for (const ip of ["10.96.0.30", "fd00:10:96::30"]) {
        const requests = Array.from({ length: n }, () => ({
          ip,
          port: 80,
          protocol: "tcp" as const,
          timeoutMs: 3000,
        }));
        const results = await tb.requestMany(pod0b, requests, { concurrency: 32 });
        const failed = results.filter((r) => !r.ok);
        deepEqual(failed, [], `${ip}: every connection is answered`);
        const counts = tally(results);
        deepEqual([...counts.keys()].sort(), endpoints.map((p) => p.name).sort(), `${ip}: who`);
        for (const [pod, count] of counts) {
          ok(
            count >= low && count <= high,
            `${ip}: ${pod} got ${count} of ${n}, outside [${low}, ${high}]`,
          );
        }
        console.log(
          `    ${ip}: ${JSON.stringify(Object.fromEntries(counts))} in [${low}, ${high}]`,
        );
      }
    });

    await t.step(
      "a pod reaching itself through its ClusterIP is answered, masqueraded",
      async () => {
        await kpx.sync([
          ...serviceObjects(tb, {
            name: "self",
            clusterIPs: ["10.96.0.40", "fd00:10:96::40"],
            ports: WEB,
          }, [pod0a]),
          ...web([pod0a, pod1a]),
        ]);
        await expectReplies(
          tb,
          pod0a,
          bothProtocols(["10.96.0.40", "fd00:10:96::40"], 80),
          (r) => ({ pod: pod0a.name, peer: r.ip.includes(":") ? node0.ipv6 : node0.ipv4 }),
          "hairpin to the only endpoint",
        );
        // With two endpoints only the hairpin is masqueraded; 24 tries reach both with
        // probability 1 - 2^-23.
        const requests = Array.from({ length: 6 }, () => bothProtocols([WEB_V4, WEB_V6], 80))
          .flat();
        const results = await tb.requestMany(pod0a, requests);
        results.forEach((r, i) => {
          const v6 = requests[i]!.ip.includes(":");
          ok(r.ok, `pod0a → web #${i}: ${JSON.stringify(r)}`);
          const want = r.pod === pod0a.name
            ? (v6 ? node0.ipv6 : node0.ipv4)
            : (v6 ? pod0a.ipv6 : pod0a.ipv4);
          equal(r.peer, want, `pod0a → web #${i} answered by ${r.pod}`);
        });
        deepEqual([...tally(results).keys()].sort(), [pod0a.name, pod1a.name]);
      },
    );

    await t.step("a service without usable endpoints rejects TCP and UDP", async () => {
      const nodePort = 30070;
      await kpx.sync([
        // No EndpointSlice at all.
        serviceObjects(tb, {
          name: "empty",
          type: "NodePort",
          clusterIPs: ["10.96.0.70", "fd00:10:96::70"],
          ports: WEB.map((p) => ({ ...p, nodePort })),
        }, [])[0]!,
        // Endpoints that are neither ready nor serving.
        ...serviceObjects(tb, {
          name: "unready",
          clusterIPs: ["10.96.0.71", "fd00:10:96::71"],
          ports: WEB,
        }, [{ pod: pod0a, ready: false }, { pod: pod1a, ready: false }]),
      ]);
      const ips = ["10.96.0.70", "fd00:10:96::70", "10.96.0.71", "fd00:10:96::71"];
      for (const from of [pod0b, pod1b, node0, tb.client]) {
        await expectFailures(tb, from, bothProtocols(ips, 80), "refused", "no endpoints");
      }
      await expectFailures(
        tb,
        tb.client,
        bothProtocols([node1.ipv4, node1.ipv6], nodePort),
        "refused",
        "node port without endpoints",
      );
    });

    await t.step(
      "an unallocated service-CIDR address and an unused ClusterIP port are rejected",
      async () => {
        // 10.97.0.0/24 is nobody's yet: kpx leaves it alone and the packets vanish on the lan.
        const quick = { timeoutMs: 600 };
        await kpx.sync(web());
        await expectFailures(
          tb,
          pod0b,
          bothProtocols(["10.97.0.5"], 80, quick),
          "timeout",
          "before the ServiceCIDR",
        );
        await kpx.sync([...web(), serviceCIDRObject("extra", ["10.97.0.0/24"])]);
        for (const from of [pod0b, node0, tb.client]) {
          await expectFailures(
            tb,
            from,
            [
              ...bothProtocols([WEB_V4, WEB_V6], 81), // the service's address, another port
              ...bothProtocols(["10.96.0.199", "fd00:10:96::199"], 80), // configured CIDRs
            ],
            "refused",
            "unallocated or unused",
          );
        }
        await expectFailures(
          tb,
          pod0b,
          bothProtocols(["10.97.0.5"], 80),
          "refused",
          "in a ServiceCIDR",
        );
        // Outside every service CIDR nothing is rejected.
        await expectFailures(
          tb,
          pod0b,
          bothProtocols(["10.98.0.5"], 80, quick),
          "timeout",
          "outside the service CIDRs",
        );
      },
    );

    await t.step(
      "a named port whose endpoints listen on different numbers reaches each",
      async () => {
        // "alt" serves only 9090, pod0a (among others) 8080: a wrong port is refused.
        const alt = await tb.addPod(1, { name: "alt", echoPorts: [9090] });
        const ports = (port: number) => [{ name: "web", protocol: "TCP" as const, port }];
        const objects: KubeObject[] = [
          serviceObjects(tb, {
            name: "mixed",
            clusterIPs: ["10.96.0.90"],
            ports: [{ name: "web", port: 80, targetPort: 8080 }],
          }, [])[0]!,
          ...[{ pod: pod0a, port: 8080 }, { pod: alt, port: 9090 }].map(({ pod, port }) => ({
            apiVersion: "discovery.k8s.io/v1",
            kind: "EndpointSlice",
            metadata: {
              name: `mixed-${pod.name}`,
              namespace: "default",
              labels: { "kubernetes.io/service-name": "mixed" },
            },
            addressType: "IPv4",
            ports: ports(port),
            endpoints: [{
              addresses: [pod.ipv4],
              nodeName: tb.node(pod.node).name,
              conditions: { ready: true },
            }],
          })),
        ];
        await kpx.sync(objects);
        const requests = Array.from({ length: 24 }, () => ({
          ip: "10.96.0.90",
          port: 80,
          protocol: "tcp" as const,
        }));
        const replies = await expectReplies(
          tb,
          pod1b,
          requests,
          () => ({ pod: [pod0a.name, alt.name], peer: pod1b.ipv4 }),
          "pod → mixed-port service",
        );
        // Both reached (probability 1 - 2^-23 for a uniform pick).
        deepEqual([...tally(replies).keys()].sort(), [alt.name, pod0a.name]);
      },
    );
  },
});
