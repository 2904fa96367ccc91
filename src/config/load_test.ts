import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { ConfigError, loadConfig, parseDuration, planContext } from "./mod.ts";
import type { NodeSpec } from "../state/mod.ts";

const file = (text: string) => ({ file: { path: "config.yaml", text } });
const head = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";

Deno.test("loadConfig() reads the fields kpx uses from a KubeProxyConfiguration", () => {
  const { config, ignored } = loadConfig(file(
    head + `
mode: nftables
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
detectLocalMode: NodeCIDR
nodePortAddresses: [192.0.2.0/24, primary]
hostnameOverride: Node-A
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {masqueradeAll: true, masqueradeBit: 12}
nftables: {syncPeriod: 1m0s, minSyncPeriod: 2s}
conntrack: {maxPerCore: 0, tcpBeLiberal: true, udpTimeout: 30s}
ipvs: {scheduler: wlc, strictARP: true}
clientConnection: {kubeconfig: /etc/kpx/kubeconfig, qps: 5}
featureGates: {SomeGate: true}
`,
  ));
  deepEqual(config.clusterCIDRs, ["10.244.0.0/16", "fd00:10:244::/56"]);
  equal(config.detectLocalMode, "NodeCIDR");
  deepEqual(config.nodePortAddresses, ["192.0.2.0/24", "primary"]);
  equal(config.hostnameOverride, "node-a");
  equal(config.masqueradeAll, true);
  equal(config.masqueradeBit, 12);
  equal(config.syncPeriodMs, 60_000);
  equal(config.minSyncPeriodMs, 2_000);
  equal(config.conntrack.maxPerCore, 0);
  equal(config.conntrack.tcpBeLiberal, true);
  equal(config.conntrack.udpTimeoutMs, 30_000);
  equal(config.ipvs.scheduler, "wlc");
  equal(config.kubeconfig, "/etc/kpx/kubeconfig");
  // Known to kube-proxy, not used by kpx: named once each.
  deepEqual(ignored.sort(), ["config.yaml: clientConnection.qps", "config.yaml: featureGates"]);
});

Deno.test("loadConfig() names an unknown field or flag", () => {
  throws(
    () => loadConfig(file(head + "clusterCidr: 10.0.0.0/8\n")),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message === "Cannot use config.yaml: clusterCidr: unknown field",
  );
  throws(
    () => loadConfig(file(head + "iptables: {masqueradeAlll: true}\n")),
    /iptables\.masqueradeAlll: unknown field/,
  );
  throws(
    () => loadConfig({ flags: [["cluster-cdr", "10.0.0.0/8"]] }),
    /--cluster-cdr: unknown flag/,
  );
});

Deno.test("loadConfig() refuses an unknown field whatever its value, {} included, at any depth", () => {
  for (
    const [yaml, field] of [
      ["fooBar: {}\n", "fooBar"],
      ["fooBar: {a: 1}\n", "fooBar"],
      ["fooBar: [1]\n", "fooBar"],
      ["nftables: {fooBar: {}}\n", "nftables.fooBar"],
      ["ipvs: {fooBar: {}}\n", "ipvs.fooBar"],
      ["conntrack: {fooBar: {}}\n", "conntrack.fooBar"],
      ["conntrack: {fooBar: 1}\n", "conntrack.fooBar"],
      ["linux: {conntrack: {fooBar: {}}}\n", "linux.conntrack.fooBar"],
      ["detectLocal: {fooBar: {}}\n", "detectLocal.fooBar"],
    ]
  ) {
    throws(
      () => loadConfig(file(head + yaml)),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message === `Cannot use config.yaml: ${field}: unknown field`,
      yaml,
    );
  }
  // Known sections, empty or null, are fine; a known section that is not an object is not.
  loadConfig(file(head + "nftables: {}\nipvs: {}\nconntrack: {}\nlinux: {conntrack: {}}\n"));
  loadConfig(file(head + "nftables: null\n"));
  throws(
    () => loadConfig(file(head + "conntrack: 5\n")),
    /config\.yaml: conntrack: expected an object, got 5/,
  );
});

Deno.test("loadConfig() names the field and the reason for invalid values", () => {
  throws(
    () => loadConfig(file(head + "clusterCIDR: 10.0.0.0/33\n")),
    /clusterCIDR: "10.0.0.0\/33" is not a CIDR/,
  );
  throws(
    () => loadConfig(file(head + "mode: iptables\n")),
    /mode: mode "iptables" is not supported/,
  );
  throws(
    () => loadConfig(file(head + "nftables: {syncPeriod: soon}\n")),
    /nftables\.syncPeriod: expected a duration/,
  );
  throws(
    () => loadConfig(file(head + "iptables: {masqueradeBit: 40}\n")),
    /masqueradeBit: 40 is not a bit number/,
  );
  throws(
    () => loadConfig(file(head + "detectLocalMode: BridgeInterface\n")),
    /detectLocal\.bridgeInterface: must be set/,
  );
  throws(
    () => loadConfig(file(head + "ipvs: {scheduler: random}\n")),
    /ipvs\.scheduler: "random" is not one of/,
  );
  throws(
    () => loadConfig(file("apiVersion: v1\nkind: KubeProxyConfiguration\n")),
    /apiVersion: expected kubeproxy/,
  );
  throws(
    () => loadConfig(file(head + "minSyncPeriod: 2m\nsyncPeriod: 1m\n")),
    /minSyncPeriod: .* is longer than syncPeriod/,
  );
  throws(() => loadConfig(file("a: [b\n")), /config\.yaml: not valid YAML/);
});

Deno.test("loadConfig(): kube-proxy's flags override the file", () => {
  const { config } = loadConfig({
    ...file(head + "clusterCIDR: 10.244.0.0/16\nmode: nftables\nnftables: {minSyncPeriod: 5s}\n"),
    flags: [
      ["cluster-cidr", "10.0.0.0/8"],
      ["masquerade-all", true],
      ["min-sync-period", "100ms"],
      ["v", "3"],
      ["hostname-override", "n1"],
    ],
  });
  deepEqual(config.clusterCIDRs, ["10.0.0.0/8"]);
  equal(config.masqueradeAll, true);
  equal(config.minSyncPeriodMs, 100);
  equal(config.verbosity, 3);
  equal(config.hostnameOverride, "n1");
});

Deno.test("loadConfig(): a boolean flag overrides the file either way", () => {
  const on = loadConfig({
    ...file(head + "iptables: {masqueradeAll: true}\nnftables: {masqueradeAll: true}\n"),
    flags: [["masquerade-all", "false"]],
  }).config;
  equal(on.masqueradeAll, false, "--masquerade-all=false beats masqueradeAll: true");
  equal(
    loadConfig({
      ...file(head + "iptables: {masqueradeAll: true}\n"),
      flags: [["masquerade-all", false]],
    })
      .config.masqueradeAll,
    false,
  );
  equal(
    loadConfig({
      ...file(head + "iptables: {masqueradeAll: false}\n"),
      flags: [["masquerade-all", true]],
    })
      .config.masqueradeAll,
    true,
  );
  const yes = head +
    "ipvs: {strictARP: true}\nconntrack: {tcpBeLiberal: true}\n";
  const off = loadConfig({
    ...file(yes),
    flags: [["ipvs-strict-arp", "false"], ["conntrack-tcp-be-liberal", "false"]],
  }).config;
  equal(off.ipvs.strictARP, false);
  equal(off.conntrack.tcpBeLiberal, false);
});

Deno.test("loadConfig(): a sync-period flag beats the file whichever section each names", () => {
  const text = head + "syncPeriod: 20s\nminSyncPeriod: 2s\n";
  const c = loadConfig({
    ...file(text),
    flags: [["iptables-sync-period", "5s"], ["iptables-min-sync-period", "1s"]],
  }).config;
  equal(c.syncPeriodMs, 5_000);
  equal(c.minSyncPeriodMs, 1_000);
  // A flag for another mode's section changes nothing.
  equal(
    loadConfig({ ...file(text), flags: [["ipvs-sync-period", "5s"]] }).config.syncPeriodMs,
    20_000,
  );
  equal(
    loadConfig({
      ...file(head + "nftables: {syncPeriod: 40s}\n"),
      flags: [["iptables-sync-period", "10s"]],
    }).config.syncPeriodMs,
    10_000,
  );
});

Deno.test("loadConfig(): an empty mode, detectLocalMode or scheduler flag means the default", () => {
  const text = head + "mode: ipvs\ndetectLocalMode: NodeCIDR\nipvs: {scheduler: wlc}\n";
  const file1 = loadConfig(file(text)).config;
  equal(file1.mode, "ipvs");
  equal(file1.modeExplicit, true);
  const c = loadConfig({
    ...file(text),
    flags: [["proxy-mode", ""], ["detect-local-mode", ""], ["ipvs-scheduler", ""]],
  }).config;
  equal(c.mode, "nftables");
  equal(c.modeExplicit, false);
  equal(c.detectLocalMode, "ClusterCIDR");
  equal(c.ipvs.scheduler, "rr");
  equal(loadConfig({ flags: [["proxy-mode", "nftables"]] }).config.modeExplicit, true);
});

Deno.test("loadConfig(): sync periods come from the section of the final mode", () => {
  const text = head + "iptables: {syncPeriod: 40s}\nipvs: {syncPeriod: 50s}\n";
  equal(loadConfig(file(text)).config.syncPeriodMs, 40_000);
  equal(loadConfig({ ...file(text), flags: [["proxy-mode", "ipvs"]] }).config.syncPeriodMs, 50_000);
  equal(
    loadConfig(file(text + "syncPeriod: 20s\n")).config.syncPeriodMs,
    20_000,
    "the top-level field wins",
  );
});

Deno.test("parseDuration() reads Go durations", () => {
  equal(parseDuration("1h2m3.5s"), 3_723_500);
  equal(parseDuration("500ms"), 500);
  equal(parseDuration("0"), 0);
  equal(parseDuration("10"), null);
  equal(parseDuration("1d"), null);
});

const node: NodeSpec = {
  name: "node-a",
  zone: "z1",
  addresses: ["192.0.2.10", "198.51.100.10", "2001:db8::10"],
  primaryIPs: ["192.0.2.10", "2001:db8::10"],
  podCIDRs: ["10.244.3.0/24"],
  labels: {},
  deleting: false,
};

Deno.test("planContext() derives detect-local and node-port addresses from the config and the Node", () => {
  const base = loadConfig({}).config;
  const noCIDR = planContext(base, "node-a", node);
  deepEqual(noCIDR.localDetection, { mode: "None" });
  ok(noCIDR.notes[0]!.includes("clusterCIDR is not set"));
  equal(noCIDR.nodePortAddresses, null, "empty nodePortAddresses: every local address");
  equal(noCIDR.nodeZone, "z1");

  const nodeCIDR = planContext(
    { ...base, detectLocalMode: "NodeCIDR", nodePortAddresses: ["primary", "198.51.100.0/24"] },
    "node-a",
    node,
  );
  deepEqual(nodeCIDR.localDetection, { mode: "CIDR", cidrs: ["10.244.3.0/24"] });
  deepEqual(nodeCIDR.nodePortAddresses, ["192.0.2.10/32", "198.51.100.0/24", "2001:db8::10/128"]);

  const prefix = planContext(
    { ...base, detectLocalMode: "InterfaceNamePrefix", interfaceNamePrefix: "veth" },
    "node-a",
    node,
  );
  deepEqual(prefix.localDetection, { mode: "InterfaceNamePrefix", interfacePrefix: "veth" });
  equal(planContext({ ...base, masqueradeBit: 3 }, "node-a", null).masqueradeBit, 3);
});
