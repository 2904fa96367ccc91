import { deepEqual, equal, ok, throws } from "node:assert/strict";
import type { NodeSpec } from "../state/mod.ts";
import { planTopology, podInterface, sourceKind } from "./topology.ts";

const NODE: NodeSpec = {
  name: "node-a",
  zone: "",
  addresses: ["192.0.2.10", "2001:db8::10"],
  primaryIPs: ["192.0.2.10", "2001:db8::10"],
  podCIDRs: ["10.244.0.0/24", "fd00:10:244::/64"],
  labels: {},
  deleting: false,
};

Deno.test("sourceKind(): node IP → node, in its podCIDRs → pod, anything else → outside", () => {
  equal(sourceKind("192.0.2.10", NODE), "node");
  equal(sourceKind("2001:0db8::10", NODE), "node");
  equal(sourceKind("10.244.0.7", NODE), "pod");
  equal(sourceKind("fd00:10:244::7", NODE), "pod");
  equal(sourceKind("10.244.1.7", NODE), "outside"); // a pod of another node
  equal(sourceKind("198.51.100.7", NODE), "outside");
  throws(() => sourceKind("nope", NODE), TypeError);
});

Deno.test("podInterface() names the pod link so detect-local recognises it", () => {
  deepEqual(podInterface({ mode: "CIDR", cidrs: [] }), { kind: "veth", name: "kpxpod0" });
  deepEqual(podInterface({ mode: "InterfaceNamePrefix", interfacePrefix: "cali" }), {
    kind: "veth",
    name: "cali0",
  });
  const long = podInterface({ mode: "InterfaceNamePrefix", interfacePrefix: "abcdefghijklmnop" });
  equal(long.kind === "veth" ? long.name : "", "abcdefghijklmno");
  deepEqual(podInterface({ mode: "BridgeInterface", interfaceName: "cbr0" }), {
    kind: "bridge",
    bridge: "cbr0",
    port: "kpxpod0",
  });
});

Deno.test("planTopology() creates every veth peer inside a trace namespace", () => {
  const t = planTopology({
    prefix: "kpxr1x0",
    node: NODE,
    source: "10.244.0.7",
    kind: "pod",
    localDetection: { mode: "BridgeInterface", interfaceName: "cbr0" },
  });
  deepEqual([t.node, t.outside, t.pod, t.probeNs], [
    "kpxr1x0-node",
    "kpxr1x0-out",
    "kpxr1x0-pod",
    "kpxr1x0-pod",
  ]);
  equal(t.batches[0]?.ns, t.node);
  const lines = t.batches.flatMap((b) => b.lines);
  const veths = lines.filter((l) => l.includes("type veth"));
  equal(veths.length, 2);
  for (const line of veths) ok(/ netns kpxr1x0-(out|pod)$/.test(line), line);
  ok(lines.includes("addr add 192.0.2.10/32 dev eth0"));
  ok(lines.includes("addr add 2001:db8::10/128 dev eth0 nodad"));
  ok(lines.includes("route add 10.244.0.7/32 dev cbr0"));
  equal(t.sysctls.get(t.outside)?.["net.ipv4.ip_forward"], 0);
  equal(t.sysctls.get(t.node)?.["net.ipv4.ip_forward"], 1);
});

Deno.test("planTopology() puts an outside source in the outside namespace", () => {
  const t = planTopology({
    prefix: "kpxr1x0",
    node: NODE,
    source: "198.51.100.7",
    kind: "outside",
    localDetection: { mode: "None" },
  });
  equal(t.pod, undefined);
  equal(t.probeNs, t.outside);
  ok(
    t.batches.find((b) => b.ns === t.outside)?.lines.includes("addr add 198.51.100.7/32 dev eth0"),
  );
});
