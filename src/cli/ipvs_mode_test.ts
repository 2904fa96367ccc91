import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import {
  FakeIpvs,
  IPVSHostError,
  type ProcessResult,
  ScriptedRunner,
  type SysctlIO,
} from "../apply/mod.ts";
import { type Config, defaultConfig } from "../config/mod.ts";
import { Logger } from "../log/mod.ts";
import { ipvsFallbackChoice, IPVSUnavailableError, startIPVSMode } from "./ipvs_mode.ts";

/** A node without the ip_vs module: ipvsadm cannot talk to the kernel. */
const NO_IPVS = (line: string): Partial<ProcessResult> =>
  line === "ipvsadm -Ln"
    ? { code: 2, stderr: "Can't initialize ipvs: Protocol not available" }
    : {};

function ipvsConfig(): Config {
  return { ...defaultConfig(), mode: "ipvs", modeExplicit: true };
}

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger({ write: (l) => lines.push(l) }), lines };
}

/** Sysctls in memory; writing `failing` throws as sysctl(8) does without the right. */
function sysctls(failing?: string): SysctlIO & { values: Record<string, string> } {
  const values: Record<string, string> = {
    "net.ipv4.vs.conntrack": "0",
    "net.ipv4.vs.expire_nodest_conn": "0",
    "net.ipv4.vs.expire_quiescent_template": "0",
  };
  return {
    values,
    read: (k) => Promise.resolve(values[k]),
    write: (k, v) => {
      if (k === failing) {
        return Promise.reject(
          new Error(`Cannot run sysctl -q -w ${k}=${v}: exit status 255: permission denied`),
        );
      }
      values[k] = v;
      return Promise.resolve();
    },
  };
}

Deno.test("ipvsFallbackChoice(): falls back unless --ipvs-fallback=false insists on IPVS", () => {
  deepEqual(ipvsFallbackChoice(undefined), { fallback: true, why: "default" });
  deepEqual(ipvsFallbackChoice(true), { fallback: true, why: "flag" });
  deepEqual(ipvsFallbackChoice(false), { fallback: false, why: "flag" });
});

Deno.test("startIPVSMode() refuses with --ipvs-fallback=false, naming the module", async () => {
  const { log, lines } = capture();
  await rejects(
    startIPVSMode(ipvsConfig(), new ScriptedRunner(NO_IPVS), log, {
      fallback: false,
      kernelRelease: "6.1.0",
    }),
    (e: unknown) => {
      ok(e instanceof IPVSUnavailableError, String(e));
      match(
        e.message,
        /^Cannot run in ipvs mode: the kernel has no IPVS \(module ip_vs\).*--ipvs-fallback=false: not falling back/,
      );
      deepEqual(e.reasons.length, 1);
      return true;
    },
  );
  deepEqual(lines, [], "no fallback was logged");
});

Deno.test("startIPVSMode() falls back to nftables mode by default and with --ipvs-fallback", async () => {
  for (const fallback of [undefined, true]) {
    const { log, lines } = capture();
    const runner = new ScriptedRunner(NO_IPVS);
    const mode = await startIPVSMode(ipvsConfig(), runner, log, {
      fallback,
      kernelRelease: "6.1.0",
    });
    equal(mode.config.mode, "nftables");
    equal(mode.ipvs, undefined);
    equal(lines.length, 1, lines.join("\n"));
    match(lines[0]!, /level=warn .*running in nftables mode instead/);
    match(lines[0]!, /module ip_vs/);
    ok(!runner.calls.some((c) => c.startsWith("sysctl")), "no sysctl was touched");
  }
});

Deno.test("startIPVSMode() names a sysctl it cannot set: refuses with --ipvs-fallback=false, falls back otherwise", async () => {
  const { log } = capture();
  const io = sysctls("net.ipv4.vs.expire_nodest_conn");
  await rejects(
    startIPVSMode(ipvsConfig(), new ScriptedRunner(), log, {
      fallback: false,
      kernelRelease: "6.1.0",
      sysctl: io,
      ipvs: new FakeIpvs(),
    }),
    (e: unknown) => {
      ok(e instanceof IPVSUnavailableError, String(e));
      equal(e.setting, "net.ipv4.vs.expire_nodest_conn");
      ok(e.cause instanceof IPVSHostError);
      match(
        e.message,
        /^Cannot run in ipvs mode: Cannot set net\.ipv4\.vs\.expire_nodest_conn to 1: .*permission denied/,
      );
      match(e.message, /--ipvs-fallback=false: not falling back/);
      return true;
    },
  );

  const fallback = capture();
  const io2 = sysctls("net.ipv4.vs.expire_nodest_conn");
  const mode = await startIPVSMode(ipvsConfig(), new ScriptedRunner(), fallback.log, {
    kernelRelease: "6.1.0",
    sysctl: io2,
    ipvs: new FakeIpvs(),
  });
  equal(mode.config.mode, "nftables");
  equal(mode.ipvs, undefined);
  // What was set before the failure is logged, then the fallback with the sysctl's name.
  equal(fallback.lines.length, 2, fallback.lines.join("\n"));
  match(fallback.lines[0]!, /msg="Set sysctl" sysctl=net\.ipv4\.vs\.conntrack from=0 to=1/);
  match(fallback.lines[1]!, /level=warn .*running in nftables mode instead/);
  match(fallback.lines[1]!, /net\.ipv4\.vs\.expire_nodest_conn/);
});

Deno.test("startIPVSMode() names ipvsadm --set when IPVS's timeouts cannot be set", async () => {
  const { log } = capture();
  const ipvs = new FakeIpvs();
  ipvs.setTimeouts = () => Promise.reject(new Error("Cannot run ipvsadm --set: exit status 2"));
  const config = { ...ipvsConfig(), ipvs: { ...ipvsConfig().ipvs, tcpTimeoutMs: 900_000 } };
  await rejects(
    startIPVSMode(config, new ScriptedRunner(), log, {
      fallback: false,
      kernelRelease: "6.1.0",
      sysctl: sysctls(),
      ipvs,
    }),
    (e: unknown) => {
      ok(e instanceof IPVSUnavailableError, String(e));
      equal(e.setting, "ipvsadm --set");
      match(e.message, /Cannot set IPVS's timeouts \(ipvsadm --set 900 0 0\)/);
      return true;
    },
  );
});

Deno.test("startIPVSMode() on a node that can run IPVS sets the sysctls and keeps mode ipvs", async () => {
  const { log, lines } = capture();
  const io = sysctls();
  const mode = await startIPVSMode(ipvsConfig(), new ScriptedRunner(), log, {
    kernelRelease: "6.1.0",
    sysctl: io,
    ipvs: new FakeIpvs(),
  });
  equal(mode.config.mode, "ipvs");
  ok(mode.ipvs);
  equal(io.values["net.ipv4.vs.conntrack"], "1");
  equal(lines.filter((l) => l.includes("Set sysctl")).length, 3);
});
