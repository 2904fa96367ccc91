import { deepEqual, equal, match } from "node:assert/strict";
import type { NodeSpec, Service } from "../state/mod.ts";
import { describeDestination, masqueradeReason, pathSteps } from "./explain.ts";
import { groupTraceBySourcePort, type TraceEvent } from "./trace_events.ts";

const NODE: NodeSpec = {
  name: "node-a",
  zone: "",
  addresses: ["192.0.2.10"],
  primaryIPs: ["192.0.2.10"],
  podCIDRs: ["10.244.0.0/24"],
  labels: {},
  deleting: false,
};

function endpoint(address: string, nodeName: string) {
  return {
    address,
    port: 8080,
    ready: true,
    serving: true,
    terminating: false,
    nodeName,
    zoneHints: [],
    nodeHints: [],
  };
}

const WEB: Service = {
  namespace: "default",
  name: "web",
  id: "default/web",
  clusterIPs: ["10.96.0.10", "fd00:10:96::10"],
  externalIPs: [],
  loadBalancerIPs: ["203.0.113.10"],
  externalTrafficLocal: true,
  internalTrafficLocal: false,
  affinitySeconds: 0,
  healthCheckNodePort: 32000,
  firewallSourceRanges: [],
  ports: [{
    name: "http",
    protocol: "TCP",
    port: 80,
    nodePort: 30080,
    endpoints: [
      endpoint("10.244.0.5", "node-a"),
      endpoint("10.244.1.5", "node-b"),
      endpoint("fd00:10:244::5", "node-a"),
    ],
  }],
};

Deno.test("describeDestination() names the Service, its role and the family's endpoints", () => {
  const tcp = (ip: string, port: number) => ({ ip, port, protocol: "tcp" as const });
  equal(
    describeDestination([WEB], NODE, tcp("10.96.0.10", 80)),
    "the ClusterIP of default/web (port http, 2 ready endpoints)",
  );
  equal(
    describeDestination([WEB], NODE, tcp("fd00:10:96::10", 80)),
    "the ClusterIP of default/web (port http, 1 ready endpoint)",
  );
  match(
    describeDestination([WEB], NODE, tcp("203.0.113.10", 80)),
    /^a LoadBalancer IP of default\/web .*externalTrafficPolicy Local: 1 on node-a/,
  );
  match(describeDestination([WEB], NODE, tcp("192.0.2.10", 30080)), /^a NodePort of default\/web/);
  match(describeDestination([WEB], NODE, tcp("10.96.0.10", 81)), /has no 81\/tcp port/);
  match(describeDestination([WEB], NODE, tcp("192.0.2.10", 22)), /no Service has node port/);
  equal(
    describeDestination([WEB], NODE, { ip: "10.96.0.10", port: 80, protocol: "udp" }),
    "a ClusterIP of default/web, which has no 80/udp port",
  );
});

/** Trace lines of a probe from outside to a ClusterIP, as nft 1.0.6 prints them. */
const OUTSIDE_TO_CLUSTERIP = [
  'trace id 85e3d16a inet kpx filter-prerouting packet: iif "eth0" ip saddr 198.51.100.7 ip daddr 10.96.0.10 tcp sport 20001 tcp dport 80',
  "trace id 85e3d16a inet kpx filter-prerouting rule ct state new jump firewall-check (verdict jump firewall-check)",
  "trace id 85e3d16a inet kpx nat-prerouting rule jump services (verdict jump services)",
  "trace id 85e3d16a inet kpx services rule ip daddr . meta l4proto . th dport vmap @service-ips4 (verdict goto class-clusterip)",
  "trace id 85e3d16a inet kpx class-clusterip rule ip saddr != @pod-cidrs4 meta mark set meta mark | 0x00004000 (verdict continue)",
  "trace id 85e3d16a inet kpx class-clusterip rule ip daddr . meta l4proto . th dport vmap @vip-targets4 (verdict goto pick-vip-u-3)",
  "trace id 85e3d16a inet kpx pick-vip-u-3 rule numgen random mod 3 vmap { 0 : goto slot-vip-u-0, 1 : goto slot-vip-u-1, 2 : goto slot-vip-u-2 } (verdict goto slot-vip-u-1)",
  "trace id 85e3d16a inet kpx slot-vip-u-1 rule dnat ip to ip daddr . meta l4proto . th dport . meta mark & 0x00000000 | 0x00000001 map @vip-endpoint-addrs4:ip daddr . meta l4proto . th dport . meta mark & 0x7fffffff | 0x7fffffff map @vip-endpoint-ports4 (verdict accept)",
  "trace id 85e3d16a inet kpx filter-forward rule ct state new jump service-endpoints-check (verdict jump service-endpoints-check)",
  "trace id 85e3d16a inet kpx nat-postrouting rule jump masquerading (verdict jump masquerading)",
  "trace id 85e3d16a inet kpx masquerading rule meta mark set meta mark ^ 0x00004000 (verdict continue)",
  "trace id 85e3d16a inet kpx masquerading rule masquerade fully-random (verdict accept)",
];

function eventsOf(lines: string[]): TraceEvent[] {
  return [...groupTraceBySourcePort(lines).values()][0] ?? [];
}

Deno.test("pathSteps() keeps the decisions and drops the plumbing", () => {
  deepEqual(pathSteps(eventsOf(OUTSIDE_TO_CLUSTERIP)), [
    "service-ips4",
    "class-clusterip",
    "mark for masquerade",
    "vip-targets4",
    "pick-vip-u-3",
    "random pick of 3",
    "slot-vip-u-1",
    "DNAT",
    "masquerade",
  ]);
  const reject = eventsOf([
    'trace id 9c inet kpx filter-forward packet: iif "eth0" ip saddr 198.51.100.3 tcp sport 20001 tcp dport 3869',
    "trace id 9c inet kpx filter-forward rule ct state new jump cluster-ips-check (verdict jump cluster-ips-check)",
    "trace id 9c inet kpx cluster-ips-check rule ip daddr @cluster-ips4 goto reject-chain (verdict goto reject-chain)",
    "trace id 9c inet kpx reject-chain rule meta l4proto tcp reject with tcp reset (verdict drop)",
  ]);
  deepEqual(pathSteps(reject), ["cluster-ips4", "reject-chain", "reject (TCP reset)"]);
});

Deno.test("masqueradeReason() says which rule marked the packet, or why none did", () => {
  match(masqueradeReason(eventsOf(OUTSIDE_TO_CLUSTERIP), true), /outside the cluster's pod CIDRs/);
  const fromPod = eventsOf(OUTSIDE_TO_CLUSTERIP.filter((l) => !l.includes("mark set")));
  match(masqueradeReason(fromPod, false), /detect-local counts the source as a pod/);
  match(masqueradeReason([], true), /no kpx rule was seen marking it/);
});
