/**
 * The generators write what kube-proxy writes: names and rules checked
 * against the expectations in kube-proxy's own tests (pkg/proxy/nftables and
 * pkg/proxy/iptables proxier_test.go: service ns1/svc1 port p80 at
 * 172.30.0.41, one endpoint 10.180.0.1:80, cluster CIDR 10.0.0.0/8).
 */
import { equal, ok } from "node:assert/strict";
import type { Service } from "../../src/state/mod.ts";
import { base32, hashPrefix } from "./_names.ts";
import {
  kubeIptablesChange,
  kubeIptablesFull,
  kubeNftablesChange,
  kubeNftablesFull,
  type ReferenceOptions,
} from "./mod.ts";

const OPTS: ReferenceOptions = { clusterCIDR: "10.0.0.0/8", masqueradeBit: 14, serviceCIDRs: [] };

function svc1(endpoints: string[]): Service {
  return {
    namespace: "ns1",
    name: "svc1",
    id: "ns1/svc1",
    clusterIPs: ["172.30.0.41"],
    externalIPs: [],
    loadBalancerIPs: [],
    firewallSourceRanges: [],
    externalTrafficLocal: false,
    internalTrafficLocal: false,
    affinitySeconds: 0,
    healthCheckNodePort: 0,
    ports: [{
      name: "p80",
      protocol: "TCP",
      port: 80,
      nodePort: 0,
      endpoints: endpoints.map((address) => ({
        address,
        port: 80,
        ready: true,
        serving: true,
        terminating: false,
        nodeName: "",
        zoneHints: [],
        nodeHints: [],
      })),
    }],
  };
}

Deno.test("base32() encodes RFC 4648 test vectors", () => {
  const e = (s: string) => base32(new TextEncoder().encode(s));
  equal(e("f"), "MY");
  equal(e("fooba"), "MZXW6YTB");
  equal(e("foobar"), "MZXW6YTBOI");
});

Deno.test("hashPrefix() gives kube-proxy's chain name hashes", () => {
  equal(hashPrefix("ns1/svc1/tcp/p80", 8), "ULMVA6XW");
  equal(hashPrefix("ns1/svc1/tcp/p80__10.180.0.1/80", 8), "5OJB2KTY");
  equal(hashPrefix("ns1/svc1:p80tcp", 16), "XPGD46QRK7WJZT7O");
  equal(hashPrefix("ns1/svc1:p80tcp10.180.0.1:80", 16), "SXIVWICOYRO3J4NJ");
});

Deno.test("kubeNftablesFull() writes kube-proxy's service, endpoint and map lines", () => {
  const lines = kubeNftablesFull([svc1(["10.180.0.1"])], OPTS).split("\n");
  const svc = "service-ULMVA6XW-ns1/svc1/tcp/p80";
  const ep = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80";
  for (
    const want of [
      `add rule ip kube-proxy ${svc} ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade`,
      `add rule ip kube-proxy ${svc} numgen random mod 1 vmap { 0 : goto ${ep} }`,
      `add rule ip kube-proxy ${ep} ip saddr 10.180.0.1 jump mark-for-masquerade`,
      `add rule ip kube-proxy ${ep} meta l4proto tcp dnat to 10.180.0.1:80`,
      `add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto ${svc} }`,
      "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x004000",
    ]
  ) {
    ok(lines.includes(want), `missing: ${want}`);
  }
});

Deno.test("kubeNftablesChange() rewrites the service's chains and flushes, then deletes, stale ones", () => {
  const change = kubeNftablesChange(svc1(["10.180.0.1"]), svc1(["10.180.0.2"]), OPTS);
  const stale = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80";
  ok(change.apply.includes("flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n"));
  ok(change.apply.includes("dnat to 10.180.0.2:80"));
  ok(change.apply.includes(`flush chain ip kube-proxy ${stale}\n`));
  ok(!change.apply.includes("add element"), "unchanged map elements are skipped");
  equal(change.cleanup, `delete chain ip kube-proxy ${stale}\n`);
});

Deno.test("kubeIptablesFull() writes kube-proxy's KUBE-SERVICES, KUBE-SVC and KUBE-SEP rules", () => {
  const lines = kubeIptablesFull([svc1(["10.180.0.1"])], OPTS).split("\n");
  const svc = "KUBE-SVC-XPGD46QRK7WJZT7O";
  const sep = "KUBE-SEP-SXIVWICOYRO3J4NJ";
  for (
    const want of [
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j ${svc}`,
      `-A ${svc} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${svc} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${sep}`,
      `-A ${sep} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ`,
      `-A ${sep} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80`,
    ]
  ) {
    ok(lines.includes(want), `missing: ${want}`);
  }
});

Deno.test("kubeIptablesChange() rewrites all of KUBE-SERVICES but only the changed service's chains", () => {
  const other = {
    ...svc1(["10.180.0.9"]),
    id: "ns1/svc2",
    name: "svc2",
    clusterIPs: ["172.30.0.42"],
  };
  const now = svc1(["10.180.0.2"]);
  const text = kubeIptablesChange([now, other], now, OPTS);
  ok(
    text.includes("-d 172.30.0.42 --dport 80 -j KUBE-SVC-"),
    "the other service's KUBE-SERVICES rule",
  );
  ok(!text.includes("10.180.0.9"), "the other service's KUBE-SEP chains are left alone");
  ok(text.includes("--to-destination 10.180.0.2:80"));
});
