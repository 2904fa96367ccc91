import {
  deepEqual as assertEquals,
  match as assertMatch,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import {
  ensureVmImage,
  IPVS_SCHEDULER_MODULES,
  parseVmResult,
  runInVm,
  type VmImage,
  vmPrerequisites,
  type VmRun,
  VmRunError,
} from "./ipvs_vm.ts";

// ---- pure: the result frame /init writes on the second serial port -----------------------------

Deno.test("parseVmResult() decodes sections and ignores carriage returns and stray lines", () => {
  const text = [
    "garbage before",
    "KPXVM-BEGIN n1\r",
    "exit 3\r",
    "modprobe 0",
    "uptime 1.52 1.90",
    `section stdout 6`,
    btoa("hello\n"),
    "end",
    "section stderr 0",
    "end",
    "section file:/work/out.json 2",
    btoa("{}"),
    "end",
    "missing /work/none",
    "KPXVM-END n1",
    "after",
  ].join("\n");
  const r = parseVmResult(text, "n1");
  assertEquals(r.exitCode, 3);
  assertEquals(r.uptimeStart, 1.52);
  assertEquals(new TextDecoder().decode(r.sections.get("stdout")), "hello\n");
  assertEquals(r.sections.get("stderr")?.length, 0);
  assertEquals(new TextDecoder().decode(r.sections.get("file:/work/out.json")), "{}");
  assertEquals(r.sections.has("file:/work/none"), false);
});

Deno.test("parseVmResult() rejects a truncated frame, a size mismatch and another nonce", () => {
  const head = ["KPXVM-BEGIN n1", "exit 0", "modprobe 0", "uptime 1 2"];
  assertThrows(() => parseVmResult([...head, "section stdout 1", "YQ==", "end"].join("\n"), "n1"), {
    name: "SyntaxError",
    message: /no end marker/,
  });
  assertThrows(
    () =>
      parseVmResult([...head, "section stdout 5", "YQ==", "end", "KPXVM-END n1"].join("\n"), "n1"),
    { name: "SyntaxError", message: /has 1 bytes, expected 5/ },
  );
  assertThrows(() => parseVmResult([...head, "KPXVM-END n1"].join("\n"), "n2"), {
    name: "SyntaxError",
    message: /no begin marker/,
  });
});

// ---- in a real Debian kernel under qemu ----------------------------------------------------------

const missing = await vmPrerequisites({ deno: true });
const inCi = Deno.env.get("CI") === "true";
const vmIgnored = missing.length > 0;
if (vmIgnored && !inCi) {
  console.warn(`ipvs_vm_test: skipping VM tests; missing on this host: ${missing.join("; ")}`);
}

Deno.test({
  name: "IPVS VM prerequisites are installed (required when CI=true)",
  ignore: vmIgnored && !inCi,
  fn() {
    assertEquals(missing, [], `missing VM prerequisites: ${missing.join("; ")}`);
  },
});

let imagePromise: Promise<VmImage> | undefined;
/** One image for the whole file: built on first use (cached on disk across runs). */
function image(): Promise<VmImage> {
  imagePromise ??= ensureVmImage({ deno: true });
  return imagePromise;
}

/** Runs a script, failing the test with its stderr when it exits non-zero. */
async function mustRunInVm(
  script: string,
  options: { files?: Record<string, string>; collect?: string[]; deno?: boolean } = {},
): Promise<VmRun> {
  const run = await runInVm(await image(), { script, timeoutMs: 120_000, ...options });
  assertEquals(
    run.exitCode,
    0,
    `script exited ${run.exitCode}\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`,
  );
  return run;
}

/** Shell: waits until something listens on `port` (TCP, or SCTP with `-S`) in netns `ns`. */
function waitListening(ns: string, port: number, ssProto = "-t"): string {
  return `for i in $(seq 1 200); do
  ip netns exec ${ns} ss -Hl ${ssProto} -n | grep -q ':${port} ' && break
  sleep 0.05
done`;
}

/**
 * Shell: namespaces client — node — backend joined by veth pairs, the node forwarding, and a
 * dummy interface in the node holding the virtual IP 10.96.0.10 (kube-proxy's kube-ipvs0).
 */
const THREE_NAMESPACES = `set -eu
for ns in client node backend; do ip netns add $ns; ip -n $ns link set lo up; done
ip -n client link add eth0 type veth peer name to-client netns node
ip -n backend link add eth0 type veth peer name to-backend netns node
ip -n client addr add 10.0.1.2/24 dev eth0
ip -n client link set eth0 up
ip -n client route add default via 10.0.1.1
ip -n backend addr add 10.1.0.5/24 dev eth0
ip -n backend link set eth0 up
ip -n backend route add default via 10.1.0.1
ip -n node addr add 10.0.1.1/24 dev to-client
ip -n node addr add 10.1.0.1/24 dev to-backend
ip -n node link set to-client up
ip -n node link set to-backend up
ip netns exec node sysctl -qw net.ipv4.ip_forward=1
ip -n node link add kube-ipvs0 type dummy
ip -n node addr add 10.96.0.10/32 dev kube-ipvs0
ip -n node link set kube-ipvs0 up
`;

Deno.test({
  name: "runInVm() runs ipvsadm against the guest kernel's IPVS",
  ignore: vmIgnored,
  async fn() {
    const run = await mustRunInVm(
      "modprobe ip_vs ip_vs_rr && ipvsadm -A -t 10.96.0.10:80 -s rr && " +
        "ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m && ipvsadm -Ln",
    );
    assertMatch(run.stdout, /TCP\s+10\.96\.0\.10:80 rr/);
    assertMatch(run.stdout, /->\s+10\.1\.0\.5:8080\s+Masq\s+1\s+0\s+0/);
    console.log(`boot+run ${run.durationMs} ms (guest boot ${run.bootMs} ms)`);
  },
});

Deno.test({
  name: "runInVm() preloads every IPVS scheduler module when asked",
  ignore: vmIgnored,
  async fn() {
    const run = await runInVm(await image(), {
      script: "cut -d' ' -f1 /proc/modules | sort",
      modules: IPVS_SCHEDULER_MODULES,
      timeoutMs: 120_000,
    });
    const loaded = run.stdout.trim().split("\n");
    for (const mod of IPVS_SCHEDULER_MODULES) assert(loaded.includes(mod), `${mod} not loaded`);
  },
});

Deno.test({
  name: "IPVS NAT in the VM carries TCP from a client namespace to a backend namespace",
  ignore: vmIgnored,
  async fn() {
    const run = await mustRunInVm(`${THREE_NAMESPACES}
ip netns exec node ipvsadm -A -t 10.96.0.10:80 -s rr
ip netns exec node ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m
ip netns exec backend socat TCP-LISTEN:8080,fork,reuseaddr \\
  SYSTEM:'echo "backend saw $SOCAT_PEERADDR"' &
${waitListening("backend", 8080)}
echo "reply: $(ip netns exec client socat -t 5 -T 10 - TCP:10.96.0.10:80 < /dev/null)"
ip netns exec node ipvsadm -Lnc
`);
    // NAT mode keeps the client's address: the backend sees 10.0.1.2, not the node.
    assertMatch(run.stdout, /^reply: backend saw 10\.0\.1\.2$/m);
    // The connection table (not --stats: the estimator updates those only every 2 s).
    assertMatch(run.stdout, /TCP\s.*\s10\.0\.1\.2:\d+\s+10\.96\.0\.10:80\s+10\.1\.0\.5:8080/);
  },
});

// SCTP has no half-close: a client that shuts down its sending side ends the association, so
// the SCTP clients read only (socat -u) and the server's reply still gets through.
Deno.test({
  name: "SCTP flows in the VM between namespaces, directly and through an IPVS SCTP service",
  ignore: vmIgnored,
  async fn() {
    const run = await mustRunInVm(`${THREE_NAMESPACES}
ip netns exec backend socat SCTP-LISTEN:9999,fork,reuseaddr \\
  SYSTEM:'echo "sctp backend saw $SOCAT_PEERADDR"' &
${waitListening("backend", 9999, "-S")}
echo "direct: $(ip netns exec client socat -u -T 10 SCTP:10.1.0.5:9999 STDOUT)"
ip netns exec node ipvsadm -A --sctp-service 10.96.0.10:9999 -s rr
ip netns exec node ipvsadm -a --sctp-service 10.96.0.10:9999 -r 10.1.0.5:9999 -m
echo "ipvs: $(ip netns exec client socat -u -T 10 SCTP:10.96.0.10:9999 STDOUT)"
ip netns exec node ipvsadm -Lnc
`);
    assertMatch(run.stdout, /^direct: sctp backend saw 10\.0\.1\.2$/m);
    assertMatch(run.stdout, /^ipvs: sctp backend saw 10\.0\.1\.2$/m);
    assertMatch(run.stdout, /SCTP\s.*\s10\.0\.1\.2:\d+\s+10\.96\.0\.10:9999\s+10\.1\.0\.5:9999/);
  },
});

Deno.test({
  name: "nft -j -f loads a JSON batch in the VM and lists it back",
  ignore: vmIgnored,
  async fn() {
    const batch = {
      nftables: [
        { add: { table: { family: "ip", name: "kpx_test" } } },
        {
          add: {
            chain: {
              family: "ip",
              table: "kpx_test",
              name: "services",
              type: "nat",
              hook: "prerouting",
              prio: -100,
              policy: "accept",
            },
          },
        },
        {
          add: {
            set: {
              family: "ip",
              table: "kpx_test",
              name: "vips",
              type: ["ipv4_addr", "inet_service"],
            },
          },
        },
        {
          add: {
            element: {
              family: "ip",
              table: "kpx_test",
              name: "vips",
              elem: [{ concat: ["10.96.0.10", 80] }, { concat: ["10.96.0.11", 443] }],
            },
          },
        },
        {
          add: {
            rule: {
              family: "ip",
              table: "kpx_test",
              chain: "services",
              expr: [
                {
                  match: {
                    op: "==",
                    left: {
                      concat: [
                        { payload: { protocol: "ip", field: "daddr" } },
                        { payload: { protocol: "tcp", field: "dport" } },
                      ],
                    },
                    right: "@vips",
                  },
                },
                { counter: null },
                { accept: null },
              ],
            },
          },
        },
      ],
    };
    const run = await mustRunInVm(
      "nft -j -f batch.json && nft -j list table ip kpx_test > listed.json",
      { files: { "batch.json": JSON.stringify(batch) }, collect: ["/work/listed.json"] },
    );
    const listedBytes = run.files["/work/listed.json"];
    assert(listedBytes !== undefined, "listed.json was not collected");
    const listed = JSON.parse(new TextDecoder().decode(listedBytes)) as {
      nftables: Record<string, { name?: string; elem?: unknown[]; expr?: unknown[] }>[];
    };
    const set = listed.nftables.find((o) => o.set?.name === "vips")?.set;
    assertEquals(set?.elem?.length, 2);
    assert(listed.nftables.some((o) => o.rule?.expr?.length === 3), "rule not listed");
  },
});

Deno.test({
  name: "Deno runs inside the VM and drives ipvsadm through Deno.Command",
  ignore: vmIgnored,
  async fn() {
    const main = `
const out = await new Deno.Command("ipvsadm", { args: ["-Ln"] }).output();
console.log(JSON.stringify({ deno: Deno.version.deno, code: out.code,
  text: new TextDecoder().decode(out.stdout) }));
`;
    const run = await mustRunInVm(
      "ipvsadm -A -u 10.96.0.10:53 -s rr && deno run -A main.ts",
      { files: { "main.ts": main }, deno: true },
    );
    const got = JSON.parse(run.stdout) as { deno: string; code: number; text: string };
    assertEquals(got.deno, Deno.version.deno);
    assertEquals(got.code, 0);
    assertMatch(got.text, /UDP\s+10\.96\.0\.10:53 rr/);
  },
});

Deno.test({
  name: "runInVm() kills qemu and throws VmRunError when the script outlives the timeout",
  ignore: vmIgnored,
  async fn() {
    const started = performance.now();
    await assertRejects(
      runInVm(await image(), { script: "sleep 600", timeoutMs: 8_000 }),
      (error: unknown) => error instanceof VmRunError && /within 8000 ms/.test(error.message),
    );
    assert(performance.now() - started < 20_000, "the timeout was not enforced");
  },
});
