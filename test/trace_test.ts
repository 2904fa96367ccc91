/**
 * `kpx trace` against the real kernel, through the CLI's handler (and, for the text output
 * and interruption, as a process): one verdict per test, on the golden plan fixtures.
 * Every test also checks that the trace left none of its namespaces behind.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { UsageError } from "../src/cli/args.ts";
import { traceCommand } from "../src/cli/trace_command.ts";
import { Logger } from "../src/log/mod.ts";
import { listNetns, shouldSkipKernelTests, TRACE_NAMESPACE_BASE } from "../src/trace/mod.ts";
import { FIXTURE_DIR } from "./plan_fixtures.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;
const skip = await shouldSkipKernelTests({ purpose: "kpx trace tests need" });

interface TraceJson {
  verdict: string;
  endpoints: string[];
  masquerade: boolean;
  probes: number;
  breakdown: Record<string, number>;
  path: string[];
  source: { ip: string; kind: string };
}

function fixtureArgs(fixture: string, flags: string[]): string[] {
  const dir = `${FIXTURE_DIR}${fixture}`;
  return ["--config", `${dir}/config.yaml`, ...flags, `${dir}/manifests.yaml`];
}

/** Runs `kpx trace -o json` in-process on a fixture; checks no namespace is left. */
async function trace(fixture: string, ...flags: string[]): Promise<TraceJson> {
  const logs: string[] = [];
  const output: string[] = [];
  const code = await traceCommand(
    fixtureArgs(fixture, ["-o", "json", ...flags]),
    new Logger({ write: (line) => logs.push(line) }),
    (s) => {
      output.push(typeof s === "string" ? s : new TextDecoder().decode(s));
      return Promise.resolve();
    },
  );
  equal(code, 0, logs.join("\n"));
  await assertNoTraceNamespaces(Deno.pid);
  return JSON.parse(output.join("")) as TraceJson;
}

async function assertNoTraceNamespaces(pid: number): Promise<void> {
  const left = (await listNetns()).filter((ns) => ns.startsWith(`${TRACE_NAMESPACE_BASE}${pid}x`));
  deepEqual(left, [], "trace namespaces left behind");
}

function assertDnat(report: TraceJson, ready: readonly string[], probes = 32): void {
  equal(report.verdict, "dnat", JSON.stringify(report));
  deepEqual(report.breakdown, { dnat: probes });
  equal(report.probes, probes);
  for (const endpoint of report.endpoints) ok(ready.includes(endpoint), `${endpoint} is not ready`);
  // Random picks: 32 probes over 2-3 endpoints miss one now and then, never all but one.
  ok(report.endpoints.length >= 2, `only ${report.endpoints.join(", ")} was hit`);
}

const CLUSTERIP_READY = ["10.244.0.5:8080", "10.244.1.5:8080", "10.244.2.5:8080"];

Deno.test({
  name: "kpx trace: a pod reaches a ClusterIP's ready endpoints, not masqueraded",
  ignore: skip,
  fn: async () => {
    const report = await trace("clusterip", "--from", "10.244.0.7", "--to", "10.96.0.10:80");
    assertDnat(report, CLUSTERIP_READY);
    equal(report.masquerade, false);
    equal(report.source.kind, "pod");
    deepEqual(report.path.slice(0, 3), ["service-ips4", "class-clusterip", "vip-targets4"]);
  },
});

Deno.test({
  name: "kpx trace: a ClusterIP from outside and from the node itself is masqueraded",
  ignore: skip,
  fn: async () => {
    const outside = await trace("clusterip", "--from", "198.51.100.7", "--to", "10.96.0.10:80");
    assertDnat(outside, CLUSTERIP_READY);
    equal(outside.masquerade, true);
    equal(outside.source.kind, "outside");
    const node = await trace("clusterip", "--from", "192.0.2.10", "--to", "10.96.0.10:80");
    assertDnat(node, CLUSTERIP_READY);
    equal(node.masquerade, true);
    equal(node.source.kind, "node");
  },
});

Deno.test({
  name: "kpx trace: detect-local by interface name sees the pod and keeps its address",
  ignore: skip,
  fn: async () => {
    const report = await trace(
      "detect-local-interface",
      "--from",
      "10.244.0.7",
      "--to",
      "10.96.0.10:80",
      "--probes",
      "8",
    );
    equal(report.verdict, "dnat");
    equal(report.masquerade, false);
  },
});

Deno.test({
  name: "kpx trace: an eTP=Local LoadBalancer IP without a local endpoint drops outside traffic",
  ignore: skip,
  fn: async () => {
    const report = await trace(
      "external-traffic-local",
      "--from",
      "198.51.100.7",
      "--to",
      "203.0.113.11:80",
    );
    equal(report.verdict, "drop");
    deepEqual(report.breakdown, { drop: 32 });
    deepEqual(report.endpoints, []);
    equal(report.masquerade, false);
    match(report.path.join(" "), /no-endpoint-services4: drop/);
  },
});

Deno.test({
  name: "kpx trace: loadBalancerSourceRanges drop a source outside them and admit one inside",
  ignore: skip,
  fn: async () => {
    const refused = await trace(
      "source-ranges",
      "--from",
      "203.0.113.99",
      "--to",
      "203.0.113.10:80",
      "--probes",
      "8",
    );
    equal(refused.verdict, "drop");
    match(refused.path.join(" "), /firewall-allow4/);
    const admitted = await trace(
      "source-ranges",
      "--from",
      "198.51.100.7",
      "--to",
      "203.0.113.10:80",
      "--probes",
      "8",
    );
    equal(admitted.verdict, "dnat");
    deepEqual(admitted.endpoints, ["10.244.0.5:8080"]);
  },
});

Deno.test({
  name: "kpx trace: a Service without endpoints rejects TCP and UDP, from a pod and the node",
  ignore: skip,
  fn: async () => {
    for (
      const [from, to, protocol] of [
        ["10.244.0.7", "10.96.0.10:80", "tcp"],
        ["10.244.0.7", "10.96.0.10:53", "udp"],
        // The node's own datagram fails with EPERM first; the ICMP error still arrives.
        ["192.0.2.10", "10.96.0.10:53", "udp"],
      ] as const
    ) {
      const report = await trace(
        "no-endpoints",
        "--from",
        from,
        "--to",
        to,
        "--protocol",
        protocol,
        "--probes",
        "16",
      );
      equal(report.verdict, "reject", `${from} → ${to}/${protocol}: ${JSON.stringify(report)}`);
      deepEqual(report.breakdown, { reject: 16 });
      match(report.path.join(" "), /no-endpoint-services4 reject-chain reject/);
    }
  },
});

Deno.test({
  name: "kpx trace: a destination kpx does not handle is accepted untouched",
  ignore: skip,
  fn: async () => {
    const report = await trace(
      "clusterip",
      "--from",
      "10.244.0.7",
      "--to",
      "198.51.100.200:80",
      "--probes",
      "8",
    );
    equal(report.verdict, "accept");
    deepEqual(report.endpoints, []);
    equal(report.masquerade, false);
    deepEqual(report.path, []);
  },
});

Deno.test({
  name: "kpx trace: an IPv6 ClusterIP reaches the IPv6 endpoints",
  ignore: skip,
  fn: async () => {
    const report = await trace(
      "dual-stack",
      "--from",
      "fd00:10:244::7",
      "--to",
      "[fd00:10:96::10]:80",
    );
    assertDnat(report, ["[fd00:10:244::5]:8080", "[fd00:10:244:1::5]:8080"]);
    equal(report.masquerade, false);
    equal(report.path[0], "service-ips6");
  },
});

Deno.test({
  name: "kpx trace: a NodePort on the node's IP from outside is DNATed and masqueraded",
  ignore: skip,
  fn: async () => {
    const report = await trace("nodeport", "--from", "198.51.100.7", "--to", "192.0.2.10:30080");
    assertDnat(report, ["10.244.0.5:8080", "10.244.1.5:8080"]);
    equal(report.masquerade, true);
    equal(report.path[0], "service-nodeports4");
  },
});

Deno.test({
  name: "kpx trace: SCTP INITs over a raw socket are DNATed, and rejected on an unknown port",
  ignore: skip,
  fn: async () => {
    const dnat = await trace(
      "protocols",
      "--from",
      "10.244.0.7",
      "--to",
      "10.96.0.53:3868",
      "--protocol",
      "sctp",
    );
    assertDnat(dnat, ["10.244.0.5:3868", "10.244.1.5:3868"]);
    const reject = await trace(
      "protocols",
      "--from",
      "10.244.0.7",
      "--to",
      "10.96.0.53:3869",
      "--protocol",
      "sctp",
      "--probes",
      "8",
    );
    equal(reject.verdict, "reject");
  },
});

function kpx(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "kpx trace as a process explains the path, endpoints and masquerade in a few lines",
  ignore: skip,
  fn: async () => {
    const child = kpx(
      ["trace", ...fixtureArgs("clusterip", ["--from", "10.244.0.7", "--to", "10.96.0.10:80"])],
    );
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    equal(out.code, 0, new TextDecoder().decode(out.stderr));
    match(stdout, /is the ClusterIP of default\/web/);
    match(stdout, /^verdict: dnat \(32 of 32 probes\)$/m);
    match(stdout, /^path: service-ips4 → class-clusterip → vip-targets4 → pick-vip-u-3/m);
    match(stdout, /^endpoints: 10\.244\.\d\.5:8080 ×\d+/m);
    match(stdout, /^masquerade: no \(/m);
    await assertNoTraceNamespaces(child.pid);
  },
});

Deno.test({
  name: "kpx trace interrupted by SIGINT deletes its namespaces and exits 130",
  ignore: skip,
  fn: async () => {
    const child = kpx(
      ["trace", ...fixtureArgs("clusterip", ["--from", "10.244.0.7", "--to", "10.96.0.10:80"])],
    );
    const mine = `${TRACE_NAMESPACE_BASE}${child.pid}x`;
    const deadline = Date.now() + 10_000;
    while (!(await listNetns()).some((ns) => ns.startsWith(mine))) {
      ok(Date.now() < deadline, "the trace made no namespace within 10 s");
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill("SIGINT");
    const out = await child.output();
    equal(out.code, 130, new TextDecoder().decode(out.stderr));
    await assertNoTraceNamespaces(child.pid);
  },
});

Deno.test("kpx trace refuses incomplete or malformed flags before touching the kernel", async () => {
  const run = (flags: string[]) =>
    traceCommand(
      fixtureArgs("clusterip", flags),
      new Logger({ write: () => {} }),
      () => Promise.resolve(),
    );
  await rejects(run(["--to", "10.96.0.10:80"]), UsageError);
  await rejects(run(["--from", "10.244.0.7", "--to", "fd00::1:80"]), /\[IPv6\]:PORT/);
  await rejects(
    run(["--from", "10.244.0.7", "--to", "10.96.0.10:80", "--protocol", "icmp"]),
    /tcp, udp or sctp/,
  );
  await rejects(
    run(["--from", "10.244.0.7", "--to", "10.96.0.10:80", "--proxy-mode", "ipvs"]),
    /mode ipvs is not supported/,
  );
});
