import { deepEqual, equal } from "node:assert/strict";
import { groupTraceBySourcePort, parseTraceLine } from "./trace_events.ts";

const PACKET = (id: string, chain: string, sport: number) =>
  `trace id ${id} inet kpx ${chain} packet: iif "kpxpod0" ip saddr 10.244.0.7 ip daddr 10.96.0.10 ` +
  `ip protocol tcp tcp sport ${sport} tcp dport 80 tcp flags == syn `;

Deno.test("parseTraceLine() reads rules with their verdict and jump target", () => {
  const parsed = parseTraceLine(
    "trace id 42dee7e2 inet kpx services rule ip daddr . meta l4proto . th dport vmap " +
      "@service-ips4 (verdict goto class-clusterip)",
  );
  deepEqual(parsed, {
    id: "42dee7e2",
    event: {
      family: "inet",
      table: "kpx",
      chain: "services",
      kind: "rule",
      text: "ip daddr . meta l4proto . th dport vmap @service-ips4",
      verdict: "goto",
      target: "class-clusterip",
    },
  });
  const drop = parseTraceLine(
    "trace id 1 inet kpx reject-chain rule meta l4proto tcp reject with tcp reset (verdict drop)",
  );
  equal(drop?.event.verdict, "drop");
  equal(drop?.event.target, undefined);
  equal(parseTraceLine("trace id 1 inet kpx filter-forward policy accept ")?.event.kind, "policy");
  equal(parseTraceLine("add element inet kpxtrace ready { 1 }"), undefined);
});

Deno.test("groupTraceBySourcePort() follows a trace id to the port of its latest packet", () => {
  const byPort = groupTraceBySourcePort([
    PACKET("aa", "nat-prerouting", 20001),
    "trace id aa inet kpx nat-prerouting rule jump services (verdict jump services)",
    PACKET("bb", "nat-prerouting", 20002),
    "trace id bb inet kpx nat-prerouting rule jump services (verdict jump services)",
    // The kernel reused buffer "aa" for the next probe.
    PACKET("aa", "nat-prerouting", 20003),
    "trace id aa inet kpx services rule ip daddr @x (verdict goto class-clusterip)",
    "add element inet kpxtrace ready { 2 }",
  ]);
  deepEqual([...byPort.keys()].sort(), [20001, 20002, 20003]);
  equal(byPort.get(20001)?.length, 2);
  equal(byPort.get(20003)?.[1]?.target, "class-clusterip");
});
