import { deepEqual, equal, ok } from "node:assert/strict";
import { preflight } from "./preflight.ts";
import type { ProcessResult, Runner } from "./process.ts";
import { SKIP_KERNEL, withKernelNamespace } from "../../test/kernel.ts";

class ScriptedRunner implements Runner {
  calls: string[][] = [];
  constructor(
    readonly answer: (argv: readonly string[], stdin: string) => Partial<ProcessResult>,
  ) {}
  run(argv: readonly string[], stdin?: Uint8Array | readonly Uint8Array[]): Promise<ProcessResult> {
    this.calls.push([...argv]);
    const text = (stdin instanceof Uint8Array ? [stdin] : stdin ?? [])
      .map((c) => new TextDecoder().decode(c)).join("");
    const a = this.answer(argv, text);
    return Promise.resolve({
      code: a.code ?? 0,
      stdout: a.stdout ?? new Uint8Array(),
      stderr: a.stderr ?? "",
    });
  }
}

const v = (s: string) => new TextEncoder().encode(s);
const sysctls = (values: Record<string, string>) => (k: string) => Promise.resolve(values[k]);

Deno.test("preflight() names a missing nft", async () => {
  const r = await preflight(
    new ScriptedRunner(() => ({ code: 127, stderr: "nft is not installed" })),
  );
  ok(r.errors[0]?.includes("nft is not installed"));
});

Deno.test("preflight() refuses an nft older than 1.0.0 and warns below 1.0.6", async () => {
  const old = await preflight(
    new ScriptedRunner(() => ({ stdout: v("nftables v0.9.8 (E.D.S.)") })),
    { sysctl: sysctls({}) },
  );
  ok(old.errors[0]?.includes("0.9.8 is too old"));
  const mid = await preflight(
    new ScriptedRunner(() => ({ stdout: v("nftables v1.0.2 (Lester Gooch)") })),
    { sysctl: sysctls({}) },
  );
  deepEqual(mid.errors, []);
  ok(mid.warnings[0]?.includes("older than 1.0.6"));
});

Deno.test("preflight() names the kernel feature whose probe the kernel refuses", async () => {
  // Only the numgen probe fails, as on a kernel without nft_numgen.
  const runner = new ScriptedRunner((argv, stdin) => {
    if (argv[1] === "--version") return { stdout: v("nftables v1.0.6 (Lester Gooch #5)") };
    if (stdin.includes("numgen")) {
      return { code: 1, stderr: "Error: Could not process rule: No such file or directory" };
    }
    return { code: 0 };
  });
  const r = await preflight(runner, { sysctl: sysctls({}) });
  equal(r.errors.length, 1);
  ok(r.errors[0]!.includes("numgen (module nft_numgen)"), r.errors[0] ?? "");
});

Deno.test("preflight() warns about forwarding off and bridge traffic bypassing netfilter", async () => {
  const r = await preflight(
    new ScriptedRunner((argv) => argv[1] === "--version" ? { stdout: v("nftables v1.0.6") } : {}),
    { sysctl: sysctls({ "net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "0" }) },
  );
  deepEqual(r.errors, []);
  ok(r.warnings.some((w) => w.includes("ip_forward is 0")));
  ok(r.warnings.some((w) => w.includes("bridge-nf-call-iptables is 0")));
});

Deno.test({
  name: "preflight() passes on this kernel (nft -c inside a throwaway namespace)",
  ignore: SKIP_KERNEL,
  fn: () =>
    withKernelNamespace(async (ns) => {
      const r = await preflight(ns.runner, { sysctl: sysctls({ "net.ipv4.ip_forward": "1" }) });
      deepEqual(r.errors, []);
      ok(r.nftVersion.startsWith("1."));
      // -c must not have left anything behind.
      const tables = new TextDecoder().decode(
        (await ns.runner.run(["nft", "list", "tables"])).stdout,
      );
      equal(tables.trim(), "");
    }),
});

Deno.test("preflight() without procps' sysctl warns instead of failing", async () => {
  const r = await preflight(
    new ScriptedRunner((argv) => {
      if (argv[0] === "sysctl") return { code: 127, stderr: "sysctl is not installed" };
      if (argv[1] === "--version") return { stdout: v("nftables v1.0.6") };
      return {};
    }),
  );
  deepEqual(r.errors, []);
  equal(r.warnings.filter((w) => w.includes("sysctl (procps) is not installed")).length, 1);
});
