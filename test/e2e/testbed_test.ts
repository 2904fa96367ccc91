import {
  deepEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { canonicalIPv6, letterSuffix } from "./_testbed_addresses.ts";
import { lanLinks, podHostLinks } from "./_testbed_topology.ts";
import {
  listNetns,
  parseConntrackOutput,
  type PodHandle,
  type ProbeRequest,
  type ProbeResult,
  type Protocol,
  reapStaleTestbeds,
  shouldSkipKernelTests,
  Testbed,
} from "./mod.ts";

// ---- pure helpers: no root needed -------------------------------------------------------------

Deno.test("canonicalIPv6() writes addresses the way the kernel prints them", () => {
  assertEquals(canonicalIPv6("fd00:10:244:0::2"), "fd00:10:244::2");
  assertEquals(canonicalIPv6("2001:0db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assertEquals(canonicalIPv6("fe80::"), "fe80::");
  assertEquals(canonicalIPv6("1:2:3:4:5:6:7:8"), "1:2:3:4:5:6:7:8");
  assertThrows(() => canonicalIPv6("1::2::3"), TypeError);
});

Deno.test("letterSuffix() numbers pods a…z, aa…", () => {
  assertEquals([0, 1, 25, 26, 27].map(letterSuffix), ["a", "b", "z", "aa", "ab"]);
});

Deno.test("topology creates every veth peer inside a testbed namespace", () => {
  const lines = [
    ...lanLinks(["kpxt1x0-n0", "kpxt1x0-n1"], "kpxt1x0-c"),
    ...podHostLinks("veth-0a", "kpxt1x0-p0a", "10.244.0.2", "fd00:10:244::2"),
  ];
  const vethLines = lines.filter((line) => line.includes("type veth"));
  assertEquals(vethLines.length, 4);
  for (const line of vethLines) assert(/ netns kpxt1x0-/.test(line), line);
  for (const line of lines) {
    for (const name of line.match(/(?<=link add name |peer name )\S+/g) ?? []) {
      assert(name.length <= 15, `interface name ${name} is longer than 15 characters`);
    }
  }
});

Deno.test("parseConntrackOutput() reads both tuples, state, flags and family", () => {
  const [tcp, udp, icmp] = parseConntrackOutput([
    "tcp      6 119 TIME_WAIT src=10.244.0.2 dst=10.96.0.1 sport=56804 dport=80 " +
    "src=10.244.1.2 dst=10.244.0.2 sport=8080 dport=56804 [ASSURED] mark=0 use=1 id=4186194486",
    "ipv6     10 udp      17 29 src=fd00:10:244::2 dst=fd00:10:96::1 sport=4000 dport=53 " +
    "[UNREPLIED] src=fd00:10:96::1 dst=fd00:10:244::2 sport=53 dport=4000 mark=0 use=1",
    "icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 " +
    "type=0 code=0 id=7 mark=0 use=1",
    "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.",
  ].join("\n"));
  assertEquals(tcp?.family, "ipv4");
  assertEquals(tcp?.state, "TIME_WAIT");
  assertEquals(tcp?.timeout, 119);
  assertEquals(tcp?.original, { src: "10.244.0.2", dst: "10.96.0.1", sport: 56804, dport: 80 });
  assertEquals(tcp?.reply, { src: "10.244.1.2", dst: "10.244.0.2", sport: 8080, dport: 56804 });
  assertEquals(tcp?.flags, ["ASSURED"]);
  assertEquals(tcp?.extra, { mark: "0", use: "1", id: "4186194486" });
  assertEquals(udp?.family, "ipv6");
  assertEquals(udp?.protocol, "udp");
  assertEquals(udp?.state, undefined);
  assertEquals(udp?.flags, ["UNREPLIED"]);
  assertEquals(udp?.reply.sport, 53);
  assertEquals(icmp?.original, { src: "10.0.0.1", dst: "10.0.0.2", type: 8, code: 0, id: 7 });
});

// ---- the real kernel ----------------------------------------------------------------------------

const skipKernel = await shouldSkipKernelTests();

function expectEcho(
  result: ProbeResult | undefined,
  pod: string,
  peer: string,
  what: string,
): void {
  assert(result !== undefined, `${what}: no result`);
  assert(result.ok, `${what}: expected a reply from ${pod}, got ${JSON.stringify(result)}`);
  assertEquals(result.pod, pod, `${what}: answered by the wrong server`);
  assertEquals(result.peer, peer, `${what}: server saw the wrong peer`);
}

function expectFailure(result: ProbeResult | undefined, failure: string, what: string): void {
  assert(result !== undefined, `${what}: no result`);
  assert(!result.ok, `${what}: expected ${failure}, got a reply ${JSON.stringify(result)}`);
  assertEquals(result.failure, failure, `${what}: ${JSON.stringify(result)}`);
}

/** TCP and UDP, IPv4 and IPv6, to every target pod on `port`. */
function requestsTo(targets: readonly PodHandle[], port: number): ProbeRequest[] {
  return targets.flatMap((pod) =>
    (["tcp", "udp"] as Protocol[]).flatMap((protocol) =>
      [pod.ipv4, pod.ipv6].map((ip) => ({ ip, port, protocol, timeoutMs: 2000 }))
    )
  );
}

Deno.test({
  name: "Testbed carries pod, node and client traffic and tells reject from drop",
  ignore: skipKernel,
  async fn(t) {
    const started = performance.now();
    let prefix = "";
    {
      await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
      prefix = tb.prefix;
      const [pod0a, pod0b, pod1a, pod1b] = tb.pods;
      assert(pod0a && pod0b && pod1a && pod1b, "four pods");
      assertEquals(tb.pods.map((p) => p.name), ["pod0a", "pod0b", "pod1a", "pod1b"]);
      assertEquals([pod0a.ipv4, pod0a.ipv6, pod1b.ipv4, pod1b.ipv6], [
        "10.244.0.2",
        "fd00:10:244::2",
        "10.244.1.3",
        "fd00:10:244:1::3",
      ]);
      console.log(`  testbed ${tb.prefix} up in ${Math.round(performance.now() - started)} ms`);

      await t.step("pods reach pods on the same and the other node, without NAT", async () => {
        for (const from of [pod0a, pod1b]) {
          const targets = tb.pods.filter((p) => p !== from);
          for (const port of [80, 8080]) {
            const requests = requestsTo(targets, port);
            const results = await tb.requestMany(from, requests);
            results.forEach((result, i) => {
              const request = requests[i]!;
              const target = targets.find((p) => [p.ipv4, p.ipv6].includes(request.ip))!;
              const peer = request.ip.includes(":") ? from.ipv6 : from.ipv4;
              const what = `${from.name} → ${request.protocol} [${request.ip}]:${port}`;
              expectEcho(result, target.name, peer, what);
            });
          }
        }
      });

      await t.step("the client reaches a hostNetwork server on a node IP", async () => {
        await tb.startHostEcho(0, { name: "node0-host", ports: [9000] });
        const node0 = tb.node(0);
        const results = await tb.requestMany(tb.client, [
          { ip: node0.ipv4, port: 9000, protocol: "tcp" },
          { ip: node0.ipv6, port: 9000, protocol: "tcp" },
          { ip: node0.ipv4, port: 9000, protocol: "udp" },
          { ip: node0.ipv6, port: 9000, protocol: "udp" },
        ]);
        results.forEach((r, i) =>
          expectEcho(r, "node0-host", i % 2 === 0 ? tb.client.ipv4 : tb.client.ipv6, `client #${i}`)
        );
        // A pod reaches its node's host server too.
        expectEcho(
          await tb.request(pod1a, { ip: node0.ipv4, port: 9000, protocol: "tcp" }),
          "node0-host",
          pod1a.ipv4,
          "pod1a → node0",
        );
      });

      await t.step("the client reaches pod IPs only once routed via a node", async () => {
        const request: ProbeRequest = {
          ip: pod1a.ipv4,
          port: 8080,
          protocol: "tcp",
          timeoutMs: 400,
        };
        expectFailure(await tb.request(tb.client, request), "timeout", "unrouted client → pod");
        await tb.routeViaNode(tb.node(1).podCidrV4, 1);
        await tb.routeViaNode(tb.node(1).podCidrV6, 1);
        const [v4, v6] = await tb.requestMany(tb.client, [
          { ...request, timeoutMs: 2000 },
          { ...request, ip: pod1a.ipv6, timeoutMs: 2000 },
        ]);
        expectEcho(v4, "pod1a", tb.client.ipv4, "routed client → pod (v4)");
        expectEcho(v6, "pod1a", tb.client.ipv6, "routed client → pod (v6)");
      });

      await t.step("a closed port is refused: TCP RST and ICMP port unreachable", async () => {
        const results = await tb.requestMany(pod0a, [
          { ip: pod1a.ipv4, port: 9999, protocol: "tcp" },
          { ip: pod1a.ipv6, port: 9999, protocol: "tcp" },
          { ip: pod1a.ipv4, port: 9999, protocol: "udp" },
          { ip: pod1a.ipv6, port: 9999, protocol: "udp" },
        ]);
        results.forEach((r, i) => expectFailure(r, "refused", `closed port #${i}`));
      });

      await t.step(
        "a dropped destination times out, an ICMP host-unreachable is unreachable",
        async () => {
          await tb.nft(1, {
            nftables: [
              { table: { family: "inet", name: "kpxt_blackhole" } },
              {
                chain: {
                  family: "inet",
                  table: "kpxt_blackhole",
                  name: "forward",
                  type: "filter",
                  hook: "forward",
                  prio: 0,
                  policy: "accept",
                },
              },
              ...[
                { protocol: "ip", address: pod1a.ipv4 },
                { protocol: "ip6", address: pod1a.ipv6 },
              ].map(({ protocol, address }) => ({
                rule: {
                  family: "inet",
                  table: "kpxt_blackhole",
                  chain: "forward",
                  expr: [
                    {
                      match: {
                        op: "==",
                        left: { payload: { protocol, field: "daddr" } },
                        right: address,
                      },
                    },
                    { drop: null },
                  ],
                },
              })),
            ],
          });
          await tb.nftText(
            1,
            `table inet kpxt_unreach {
             chain forward {
               type filter hook forward priority 0; policy accept;
               ip daddr ${pod1b.ipv4} reject with icmp host-unreachable
               ip6 daddr ${pod1b.ipv6} reject with icmpv6 addr-unreachable
             }
           }`,
          );
          try {
            const timeoutMs = 500;
            const results = await tb.requestMany(pod0a, [
              ...requestsTo([pod1a], 8080).map((r) => ({ ...r, timeoutMs })),
              ...requestsTo([pod1b], 8080),
            ]);
            results.slice(0, 4).forEach((r, i) => {
              expectFailure(r, "timeout", `dropped #${i}`);
              assert(r !== undefined && r.elapsedMs >= timeoutMs - 5, `dropped #${i} ended early`);
              assert(r.elapsedMs < timeoutMs + 500, `dropped #${i} ended late: ${r.elapsedMs} ms`);
            });
            results.slice(4).forEach((r, i) => expectFailure(r, "unreachable", `rejected #${i}`));
            const tables = (await tb.listRuleset(1)).nftables.flatMap((o) =>
              "table" in o ? [(o.table as { name: string }).name] : []
            );
            assertEquals(tables.sort(), ["kpxt_blackhole", "kpxt_unreach"]);
          } finally {
            await tb.nftText(
              1,
              "delete table inet kpxt_blackhole\ndelete table inet kpxt_unreach\n",
            );
          }
          expectEcho(
            await tb.request(pod0a, { ip: pod1a.ipv4, port: 8080, protocol: "tcp" }),
            "pod1a",
            pod0a.ipv4,
            "after removing the drop rule",
          );
        },
      );

      await t.step("conntrack entries of a tracked namespace are listed and deleted", async () => {
        // Conntrack only tracks in a namespace whose rules use it.
        await tb.nftText(
          1,
          "table inet kpxt_track { chain f { type filter hook forward priority 0; ct state new counter; }; }\n",
        );
        const sourcePort = 40123;
        expectEcho(
          await tb.request(pod0a, { ip: pod1a.ipv4, port: 80, protocol: "udp", sourcePort }),
          "pod1a",
          pod0a.ipv4,
          "tracked udp",
        );
        const entries = await tb.listConntrack(1, ["-p", "udp", "--sport", String(sourcePort)]);
        assertEquals(entries.length, 1, JSON.stringify(entries));
        assertEquals(entries[0]?.original, {
          src: pod0a.ipv4,
          dst: pod1a.ipv4,
          sport: sourcePort,
          dport: 80,
        });
        assertEquals(entries[0]?.reply.src, pod1a.ipv4);
        const deleted = await tb.conntrack(1, ["-D", "-p", "udp", "--sport", String(sourcePort)]);
        assertEquals(deleted.entries.length, 1);
        assertEquals(await tb.listConntrack(1, ["-p", "udp", "--sport", String(sourcePort)]), []);
      });

      await t.step(
        "a node's DNAT + masquerade serves a VIP to pods and to the client",
        async () => {
          await tb.nftText(
            0,
            `table inet kpxt_nat {
             chain pre {
               type nat hook prerouting priority dstnat;
               ip daddr 10.96.0.10 meta l4proto { tcp, udp } th dport 80 dnat ip to ${pod1a.ipv4}:8080
               ip6 daddr fd00:10:96::10 meta l4proto { tcp, udp } th dport 80 dnat ip6 to [${pod1a.ipv6}]:8080
             }
             chain post {
               type nat hook postrouting priority srcnat;
               ip daddr ${pod1a.ipv4} masquerade
               ip6 daddr ${pod1a.ipv6} masquerade
             }
           }`,
          );
          try {
            await tb.routeViaNode("10.96.0.0/16", 0);
            await tb.routeViaNode("fd00:10:96::/112", 0);
            const node0 = tb.node(0);
            const vips = (["tcp", "udp"] as Protocol[]).flatMap((protocol) =>
              ["10.96.0.10", "fd00:10:96::10"].map((ip) => ({ ip, port: 80, protocol }))
            );
            for (const from of [pod0b, tb.client]) {
              const results = await tb.requestMany(from, vips);
              results.forEach((r, i) => {
                const peer = vips[i]!.ip.includes(":") ? node0.ipv6 : node0.ipv4;
                expectEcho(r, "pod1a", peer, `${from.name} → VIP #${i}`);
              });
            }
          } finally {
            await tb.nftText(0, "delete table inet kpxt_nat\n");
          }
        },
      );

      await t.step("200 probes from one process each get their own source port", async () => {
        const begin = performance.now();
        const results = await tb.requestMany(
          pod0b,
          Array.from({ length: 200 }, (_, i) => ({
            ip: i % 2 === 0 ? pod1b.ipv4 : pod1b.ipv6,
            port: 8080,
            protocol: (i % 4 < 2 ? "tcp" : "udp") as Protocol,
          })),
        );
        const elapsed = performance.now() - begin;
        results.forEach((r, i) =>
          expectEcho(r, "pod1b", i % 2 === 0 ? pod0b.ipv4 : pod0b.ipv6, `#${i}`)
        );
        const tcpPorts = results.filter((_, i) => i % 4 < 2).map((r) => (r.ok ? r.sourcePort : 0));
        assertEquals(new Set(tcpPorts).size, tcpPorts.length);
        console.log(`  200 probes in ${Math.round(elapsed)} ms`);
      });

      await t.step("sysctls, exec and pod removal", async () => {
        assertEquals(await tb.readSysctl(0, "net.ipv4.ip_forward"), "1");
        await tb.sysctl(pod0a, { "net.ipv4.ip_local_port_range": "40000 40100" });
        assertEquals(await tb.readSysctl(pod0a, "net.ipv4.ip_local_port_range"), "40000\t40100");
        const routes = await tb.exec(pod0a, ["ip", "route", "show"], { timeoutMs: 2000 });
        assertEquals(routes.code, 0);
        assert(routes.stdout.includes("default via 169.254.1.1 dev eth0"), routes.stdout);
        const slow = await tb.exec(pod0a, ["sleep", "5"], { timeoutMs: 200 });
        assert(slow.timedOut && slow.code === -1, JSON.stringify(slow));
        assertThrows(() => tb.ns("some-other-namespace"), RangeError);

        await tb.removePod(pod1b);
        assert(!tb.namespaces.includes(pod1b.ns));
        const added = await tb.addPod(1, { name: "late", echoPorts: [8080] });
        assertEquals(added.ipv4, "10.244.1.4");
        expectEcho(
          await tb.request(pod0a, { ip: added.ipv6, port: 8080, protocol: "tcp" }),
          "late",
          pod0a.ipv6,
          "pod added later",
        );
        await assertRejects(() => tb.addPod(0, { name: "late" }), TypeError);
      });
    }
    const left = (await listNetns()).filter((ns) => ns.startsWith(`${prefix}-`));
    assertEquals(left, [], "namespaces left after close");
    console.log(`  whole test ${Math.round(performance.now() - started)} ms`);
  },
});

Deno.test({
  name: "reapStaleTestbeds() deletes namespaces of dead processes only",
  ignore: skipKernel,
  async fn() {
    // pid_max is at most 2^22, so this creator pid can never be alive; adding our pid keeps
    // parallel runs of this test apart.
    const stale = `kpxt${2 ** 22 + Deno.pid}x0-n0`;
    const add = new Deno.Command("ip", { args: ["netns", "add", stale] }).outputSync();
    assert(add.success, new TextDecoder().decode(add.stderr));
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 0 });
    try {
      await reapStaleTestbeds();
      // (A parallel run's reaper may have got there first: only its absence is certain.)
      assert(!(await listNetns()).includes(stale), `${stale} was not reaped`);
      assert((await listNetns()).includes(tb.node(0).ns), "a live testbed is kept");
    } finally {
      if ((await listNetns()).includes(stale)) {
        new Deno.Command("ip", { args: ["netns", "delete", stale] }).outputSync();
      }
    }
  },
});

Deno.test({
  name: "Testbed.create() rejects an impossible size before creating anything",
  ignore: skipKernel,
  async fn() {
    const ours = async () => (await listNetns()).filter((ns) => ns.startsWith(`kpxt${Deno.pid}x`));
    const before = await ours();
    await assertRejects(() => Testbed.create({ nodes: 9 }), RangeError);
    assertEquals(await ours(), before);
  },
});
