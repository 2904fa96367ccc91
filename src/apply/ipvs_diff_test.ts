import { deepEqual, equal } from "node:assert/strict";
import { parseRestore, serviceKey, type VirtualService } from "../planner/mod.ts";
import { asKernelTable, drainKey, reconcile } from "./ipvs_diff.ts";
import { type IPVSTable, ownsService, parseIpvsList } from "./ipvs_state.ts";

const KEY = "-t 10.96.0.10:80";

function desired(text: string): Map<string, VirtualService> {
  return new Map(parseRestore(text).map((s) => [serviceKey(s), s]));
}

function kernel(text: string, conns: Record<string, [number, number]> = {}): IPVSTable {
  const t = asKernelTable(parseRestore(text));
  for (const s of t.values()) {
    for (const r of s.reals) {
      const c = conns[`${r.address}:${r.port}`];
      if (c) [r.activeConns, r.inactiveConns] = c;
    }
  }
  return t;
}

const WEB = `-A ${KEY} -s rr
-a ${KEY} -r 10.244.0.5:8080 -m -w 1
-a ${KEY} -r 10.244.1.5:8080 -m -w 1
`;

Deno.test("reconcile() adds services and real servers before anything is removed", () => {
  const r = reconcile(
    kernel(`-A -t 10.96.0.9:80 -s rr\n-a -t 10.96.0.9:80 -r 10.244.0.1:80 -m -w 1\n`),
    desired(WEB),
  );
  deepEqual(r.ops, [
    `-A ${KEY} -s rr`,
    `-a ${KEY} -r 10.244.0.5:8080 -m -w 1`,
    `-a ${KEY} -r 10.244.1.5:8080 -m -w 1`,
    "-D -t 10.96.0.9:80",
  ]);
  deepEqual([...r.expected.keys()], [KEY]);
});

Deno.test("reconcile() changes a scheduler or persistence with -E, and leaves an equal service alone", () => {
  deepEqual(reconcile(kernel(WEB), desired(WEB)).ops, []);
  const r = reconcile(kernel(WEB), desired(WEB.replace("-s rr", "-s mh -p 60")));
  deepEqual(r.ops, [`-E ${KEY} -s mh -p 60`]);
  // Persistence off again: -E without -p.
  deepEqual(reconcile(kernel(WEB.replace("-s rr", "-s rr -p 60")), desired(WEB)).ops, [
    `-E ${KEY} -s rr`,
  ]);
});

Deno.test("reconcile() drains a TCP real server with connections: weight 0, then deleted when idle or after the timeout", () => {
  const now = 1_000_000;
  const gone = WEB.split("\n").filter((l) => !l.includes("10.244.1.5")).join("\n");
  const busy = kernel(WEB, { "10.244.1.5:8080": [2, 1] });
  const first = reconcile(busy, desired(gone), { drains: new Map(), now, timeoutMs: 60_000 });
  deepEqual(first.ops, [`-e ${KEY} -r 10.244.1.5:8080 -m -w 0`]);
  const dk = drainKey(KEY, { address: "10.244.1.5", port: 8080 });
  deepEqual([...first.drains], [[dk, now]]);
  equal(first.expected.get(KEY)?.reals.find((r) => r.address === "10.244.1.5")?.weight, 0);

  // Still busy, within the timeout: nothing to do, the drain is remembered.
  const k2 = kernel(WEB.replace("10.244.1.5:8080 -m -w 1", "10.244.1.5:8080 -m -w 0"), {
    "10.244.1.5:8080": [1, 0],
  });
  const second = reconcile(k2, desired(gone), {
    drains: first.drains,
    now: now + 30_000,
    timeoutMs: 60_000,
  });
  deepEqual(second.ops, []);
  deepEqual([...second.drains], [[dk, now]]);
  // Past the timeout: deleted although busy.
  const third = reconcile(k2, desired(gone), {
    drains: first.drains,
    now: now + 60_000,
    timeoutMs: 60_000,
  });
  deepEqual(third.ops, [`-d ${KEY} -r 10.244.1.5:8080`]);
  deepEqual([...third.drains], []);
  // Idle: deleted at once.
  const idle = kernel(WEB.replace("10.244.1.5:8080 -m -w 1", "10.244.1.5:8080 -m -w 0"));
  deepEqual(
    reconcile(idle, desired(gone), { drains: first.drains, now: now + 1, timeoutMs: 60_000 }).ops,
    [
      `-d ${KEY} -r 10.244.1.5:8080`,
    ],
  );
});

Deno.test("reconcile() deletes UDP and SCTP real servers at once, and revives a draining one that is wanted again", () => {
  const udp = WEB.replaceAll("-t ", "-u ");
  const gone = udp.split("\n").filter((l) => !l.includes("10.244.1.5")).join("\n");
  const r = reconcile(kernel(udp, { "10.244.1.5:8080": [0, 5] }), desired(gone), {
    drains: new Map(),
    now: 0,
    timeoutMs: 1,
  });
  deepEqual(r.ops, [`-d -u 10.96.0.10:80 -r 10.244.1.5:8080`]);
  const draining = kernel(WEB.replace("10.244.1.5:8080 -m -w 1", "10.244.1.5:8080 -m -w 0"), {
    "10.244.1.5:8080": [3, 0],
  });
  const drains = new Map([[drainKey(KEY, { address: "10.244.1.5", port: 8080 }), 0]]);
  const back = reconcile(draining, desired(WEB), { drains, now: 10, timeoutMs: 60_000 });
  deepEqual(back.ops, [`-e ${KEY} -r 10.244.1.5:8080 -m -w 1`]);
  deepEqual([...back.drains], []);
});

Deno.test("reconcile() keeps a removed virtual service while its real servers drain, and deletes it with the last", () => {
  const busy = kernel(WEB, { "10.244.0.5:8080": [1, 0] });
  const r = reconcile(busy, new Map(), { drains: new Map(), now: 5, timeoutMs: 60_000 });
  deepEqual(r.ops, [`-e ${KEY} -r 10.244.0.5:8080 -m -w 0`, `-d ${KEY} -r 10.244.1.5:8080`]);
  deepEqual(r.expected.get(KEY)?.reals.map((x) => [x.address, x.weight]), [["10.244.0.5", 0]]);
  const idle = kernel(WEB);
  deepEqual(reconcile(idle, new Map(), { drains: new Map(), now: 5, timeoutMs: 60_000 }).ops, [
    `-D ${KEY}`,
  ]);
  // Undo (no graceful): immediate.
  deepEqual(reconcile(busy, new Map()).ops, [`-D ${KEY}`]);
});

Deno.test("parseIpvsList() reads ipvsadm -Ln: persistence, IPv6, SCTP, connection counts; skips FWM services", () => {
  const t = parseIpvsList(`IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 rr persistent 60
  -> 10.1.1.1:80                  Masq    0      3          7
SCTP 10.0.0.1:90 wrr
FWM  5 rr
  -> 10.9.9.9:80                  Route   1      0          0
UDP  [fd00::1]:53 sh
  -> [fd00:1::2]:5353             Masq    1      0          0
`);
  deepEqual([...t.keys()], ["-t 10.0.0.1:80", "--sctp-service 10.0.0.1:90", "-u [fd00::1]:53"]);
  deepEqual(t.get("-t 10.0.0.1:80"), {
    protocol: "tcp",
    address: "10.0.0.1",
    port: 80,
    scheduler: "rr",
    persistence: 60,
    reals: [{
      address: "10.1.1.1",
      port: 80,
      forward: "masq",
      weight: 0,
      activeConns: 3,
      inactiveConns: 7,
    }],
  });
  equal(t.get("-u [fd00::1]:53")?.reals[0]?.address, "fd00:1::2");
});

Deno.test("ownsService(): excluded never; remembered, on kube-ipvs0, or a node port on a node address", () => {
  const o = {
    boundAddresses: new Set(["10.96.0.10"]),
    nodeIPs: new Set(["192.0.2.10"]),
    known: new Set(["-t 192.0.2.10:8443"]),
    excludeCIDRs: ["10.96.5.0/24"],
  };
  const s = (address: string, port: number) => ({ protocol: "tcp" as const, address, port });
  equal(ownsService(s("10.96.0.10", 80), o), true);
  equal(ownsService(s("192.0.2.10", 30080), o), true);
  equal(ownsService(s("192.0.2.10", 443), o), false, "a node address outside the node-port range");
  equal(ownsService(s("192.0.2.10", 8443), o), true, "remembered");
  equal(
    ownsService(s("10.96.5.3", 80), { ...o, boundAddresses: new Set(["10.96.5.3"]) }),
    false,
    "excluded",
  );
  equal(ownsService(s("198.51.100.1", 80), o), false);
});
