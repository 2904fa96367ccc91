import { deepEqual } from "node:assert/strict";
import type { Service } from "../state/mod.ts";
import { conntrackArgs, staleFlows } from "./conntrack.ts";

function dns(endpoints: Array<[string, boolean]>, nodePort = 0): Service {
  return {
    namespace: "kube-system",
    name: "dns",
    id: "kube-system/dns",
    clusterIPs: ["10.96.0.10"],
    externalIPs: ["198.51.100.10"],
    loadBalancerIPs: [],
    firewallSourceRanges: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    affinitySeconds: 0,
    healthCheckNodePort: 0,
    ports: [
      {
        name: "dns",
        protocol: "UDP",
        port: 53,
        nodePort,
        endpoints: endpoints.map(([address, ready]) => ({
          address,
          port: 5353,
          ready,
          serving: ready,
          terminating: false,
          nodeName: "node-a",
          zoneHints: [],
          nodeHints: [],
        })),
      },
      { name: "dns-tcp", protocol: "TCP", port: 53, nodePort: 0, endpoints: [] },
    ],
  };
}

Deno.test("staleFlows() deletes flows DNATed to a UDP endpoint that went away, on every service address and the node port", () => {
  const old = dns([["10.244.0.5", true], ["10.244.1.5", true]], 30053);
  const now = dns([["10.244.0.5", true]], 30053);
  deepEqual(staleFlows({ old, now }).map(conntrackArgs), [
    [
      "conntrack",
      "-D",
      "-f",
      "ipv4",
      "-p",
      "udp",
      "--orig-dst",
      "10.96.0.10",
      "--orig-port-dst",
      "53",
      "--reply-src",
      "10.244.1.5",
    ],
    [
      "conntrack",
      "-D",
      "-f",
      "ipv4",
      "-p",
      "udp",
      "--orig-dst",
      "198.51.100.10",
      "--orig-port-dst",
      "53",
      "--reply-src",
      "10.244.1.5",
    ],
    [
      "conntrack",
      "-D",
      "-f",
      "ipv4",
      "-p",
      "udp",
      "--orig-port-dst",
      "30053",
      "--reply-src",
      "10.244.1.5",
    ],
  ]);
});

Deno.test("staleFlows() treats an endpoint that stopped being ready as gone", () => {
  const old = dns([["10.244.0.5", true], ["10.244.1.5", true]]);
  const now = dns([["10.244.0.5", true], ["10.244.1.5", false]]);
  deepEqual(staleFlows({ old, now }).map((f) => f.replySrc), ["10.244.1.5", "10.244.1.5"]);
});

Deno.test("staleFlows() clears a UDP service's addresses when it gains its first endpoint", () => {
  const old = dns([], 30053);
  const now = dns([["10.244.0.5", true]], 30053);
  deepEqual(staleFlows({ old, now }).map(conntrackArgs), [
    [
      "conntrack",
      "-D",
      "-f",
      "ipv4",
      "-p",
      "udp",
      "--orig-dst",
      "10.96.0.10",
      "--orig-port-dst",
      "53",
    ],
    [
      "conntrack",
      "-D",
      "-f",
      "ipv4",
      "-p",
      "udp",
      "--orig-dst",
      "198.51.100.10",
      "--orig-port-dst",
      "53",
    ],
    ["conntrack", "-D", "-f", "ipv4", "-p", "udp", "--orig-port-dst", "30053"],
  ]);
});

Deno.test("staleFlows() clears a deleted UDP service and ignores TCP and unchanged services", () => {
  const old = dns([["10.244.0.5", true]]);
  deepEqual(staleFlows({ old, now: null }).map((f) => f.origDst), ["10.96.0.10", "198.51.100.10"]);
  deepEqual(staleFlows({ old, now: dns([["10.244.0.5", true]]) }), []);
});
