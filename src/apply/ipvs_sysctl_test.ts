import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { defaultConfig } from "../config/mod.ts";
import {
  applyIPVSSysctls,
  IPVSHostError,
  ipvsSysctls,
  prepareIPVSHost,
  type SysctlIO,
} from "./ipvs_sysctl.ts";
import { ipvsPreflight } from "./ipvs_preflight.ts";
import { ScriptedRunner } from "./scripted_runner.ts";

function memory(values: Record<string, string>): SysctlIO & { writes: string[] } {
  const writes: string[] = [];
  return {
    writes,
    read: (k) => Promise.resolve(values[k]),
    write: (k, v) => {
      writes.push(`${k}=${v}`);
      values[k] = v;
      return Promise.resolve();
    },
  };
}

Deno.test("ipvsSysctls(): conntrack and expiry always; conn_reuse_mode before 5.9; strictARP on request", () => {
  const keys = (s: ReturnType<typeof ipvsSysctls>) => s.map((x) => `${x.key}=${x.value}`);
  const ipvs = defaultConfig().ipvs;
  deepEqual(keys(ipvsSysctls(ipvs, "6.1.0-56-amd64")), [
    "net.ipv4.vs.conntrack=1",
    "net.ipv4.vs.expire_nodest_conn=1",
    "net.ipv4.vs.expire_quiescent_template=1",
  ]);
  ok(keys(ipvsSysctls(ipvs, "5.4.0-150-generic")).includes("net.ipv4.vs.conn_reuse_mode=0"));
  const strict = keys(ipvsSysctls({ ...ipvs, strictARP: true }, "6.1.0"));
  ok(
    strict.includes("net.ipv4.conf.all.arp_ignore=1") &&
      strict.includes("net.ipv4.conf.all.arp_announce=2"),
  );
});

Deno.test("prepareIPVSHost() writes only what differs, sets IPVS timeouts when configured, and names a missing key", async () => {
  const io = memory({
    "net.ipv4.vs.conntrack": "0",
    "net.ipv4.vs.expire_nodest_conn": "1",
    "net.ipv4.vs.expire_quiescent_template": "0",
  });
  const timeouts: number[][] = [];
  const ipvs = { setTimeouts: (...t: number[]) => Promise.resolve(void timeouts.push(t)) };
  const config = { ...defaultConfig().ipvs, tcpTimeoutMs: 900_000, udpTimeoutMs: 30_000 };
  const changes = await prepareIPVSHost(config, { ipvs, kernelRelease: "6.1.0", sysctl: io });
  deepEqual(io.writes, ["net.ipv4.vs.conntrack=1", "net.ipv4.vs.expire_quiescent_template=1"]);
  equal(changes.length, 2);
  deepEqual(timeouts, [[900, 0, 30]]);
  await rejects(
    applyIPVSSysctls(ipvsSysctls(defaultConfig().ipvs, "6.1.0"), memory({})),
    /Cannot set net\.ipv4\.vs\.conntrack: the kernel has no such setting \(is the ip_vs module loaded\?\)/,
  );
});

Deno.test("applyIPVSSysctls() fails with an IPVSHostError naming the sysctl and what it had set", async () => {
  const io = memory({
    "net.ipv4.vs.conntrack": "0",
    "net.ipv4.vs.expire_nodest_conn": "0",
    "net.ipv4.vs.expire_quiescent_template": "0",
  });
  io.write = (k, v) =>
    k === "net.ipv4.vs.conntrack"
      ? Promise.resolve(void io.writes.push(`${k}=${v}`))
      : Promise.reject(new Error("sysctl: permission denied on key"));
  await rejects(applyIPVSSysctls(ipvsSysctls(defaultConfig().ipvs, "6.1.0"), io), (e: unknown) => {
    ok(e instanceof IPVSHostError, String(e));
    equal(e.setting, "net.ipv4.vs.expire_nodest_conn");
    equal(
      e.message,
      "Cannot set net.ipv4.vs.expire_nodest_conn to 1: sysctl: permission denied on key",
    );
    deepEqual(e.applied, [{ key: "net.ipv4.vs.conntrack", from: "0", to: "1" }]);
    return true;
  });
});

Deno.test("ipvsPreflight() names a missing ipvsadm, a kernel without IPVS, and a scheduler whose module is missing", async () => {
  const none = await ipvsPreflight(
    new ScriptedRunner(() => ({ code: 127, stderr: "ipvsadm is not installed" })),
    "rr",
  );
  ok(none.errors[0]?.includes("ipvsadm is not installed (Debian/Ubuntu: apt-get install ipvsadm)"));
  const noKernel = await ipvsPreflight(
    new ScriptedRunner((l) =>
      l === "ipvsadm -Ln"
        ? { code: 2, stderr: "Can't initialize ipvs: Protocol not available" }
        : {}
    ),
    "rr",
  );
  ok(
    noKernel.errors[0]?.includes("the kernel has no IPVS (module ip_vs)"),
    noKernel.errors[0] ?? "",
  );
  const noSched = new ScriptedRunner((l) =>
    l.startsWith("ipvsadm -A")
      ? { code: 255, stderr: "Scheduler or persistence engine not found\n" }
      : {}
  );
  const r = await ipvsPreflight(noSched, "mh");
  deepEqual(r.errors, [
    "the kernel cannot use IPVS scheduler mh (module ip_vs_mh): Scheduler or persistence engine not found",
  ]);
  const fine = new ScriptedRunner(() => ({}));
  deepEqual((await ipvsPreflight(fine, "wlc")).errors, []);
  deepEqual(fine.calls.slice(-2), [
    "ipvsadm -A -t 0.0.0.0:20000 -s wlc",
    "ipvsadm -D -t 0.0.0.0:20000",
  ]);
});
