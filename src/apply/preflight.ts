/**
 * Start-up checks: is this node able to run kpx's rules? Each problem is named
 * with what to do about it. Kernel features are probed with `nft -c` (check
 * only: the kernel validates the batch and nothing is applied), one small
 * batch per feature, so a failure names the missing piece.
 */
import { CommandFailedError, type Runner } from "./process.ts";
import { readSysctl } from "./sysctl.ts";

export interface PreflightResult {
  /** kpx cannot work: refuse to start. */
  errors: string[];
  /** kpx works, but something will not behave as expected. */
  warnings: string[];
  nftVersion: string;
}

const T = { family: "inet", table: "kpxprobe" };
const table = { add: { table: { family: "inet", name: "kpxprobe" } } };
const chain = (name: string, base?: Record<string, unknown>) => ({
  add: { chain: { ...T, name, ...base } },
});
const rule = (c: string, expr: unknown[]) => ({ add: { rule: { ...T, chain: c, expr } } });
const daddr = { payload: { protocol: "ip", field: "daddr" } };
const dport = { payload: { protocol: "th", field: "dport" } };
const l4 = { meta: { key: "l4proto" } };

/** One probe per kernel feature kpx's layout uses, with the module that provides it. */
export const FEATURE_PROBES: Array<{ feature: string; module: string; batch: unknown[] }> = [
  { feature: "nf_tables inet tables", module: "nf_tables", batch: [table] },
  {
    feature: "NAT chains and DNAT",
    module: "nft_nat / nf_nat",
    batch: [
      table,
      chain("n", { type: "nat", hook: "prerouting", prio: -100, policy: "accept" }),
      rule("n", [
        { match: { op: "==", left: l4, right: "tcp" } },
        { dnat: { family: "ip", addr: "10.0.0.1", port: 80 } },
      ]),
    ],
  },
  {
    feature: "masquerade",
    module: "nft_masq",
    batch: [
      table,
      chain("p", { type: "nat", hook: "postrouting", prio: 100, policy: "accept" }),
      rule("p", [{ masquerade: { flags: ["fully-random"] } }]),
    ],
  },
  {
    feature: "conntrack matches",
    module: "nft_ct / nf_conntrack",
    batch: [
      table,
      chain("c"),
      rule("c", [{ match: { op: "in", left: { ct: { key: "state" } }, right: "new" } }, {
        drop: null,
      }]),
    ],
  },
  {
    feature: "fib lookups",
    module: "nft_fib_inet",
    batch: [
      table,
      chain("f", { type: "filter", hook: "prerouting", prio: 0, policy: "accept" }),
      rule("f", [{
        match: { op: "==", left: { fib: { result: "type", flags: ["daddr"] } }, right: "local" },
      }, { drop: null }]),
    ],
  },
  {
    feature: "numgen",
    module: "nft_numgen",
    batch: [
      table,
      chain("g"),
      chain("h"),
      rule("g", [{
        vmap: {
          key: { numgen: { mode: "random", mod: 2, offset: 0 } },
          data: { set: [[0, { goto: { target: "h" } }], [1, { goto: { target: "h" } }]] },
        },
      }]),
    ],
  },
  {
    feature: "concatenated maps",
    module: "nft_hash (set backends)",
    batch: [
      table,
      {
        add: {
          map: {
            ...T,
            name: "m",
            type: ["ipv4_addr", "inet_proto", "inet_service"],
            map: "verdict",
          },
        },
      },
      chain("v"),
      rule("v", [{ vmap: { key: { concat: [daddr, l4, dport] }, data: "@m" } }]),
    ],
  },
  {
    feature: "concatenated interval sets (pipapo, Linux 5.6+)",
    module: "nft_set_pipapo",
    batch: [table, {
      add: {
        set: {
          ...T,
          name: "s",
          type: ["ipv4_addr", "ipv4_addr"],
          flags: ["interval"],
          elem: [{ concat: ["1.2.3.4", { prefix: { addr: "10.0.0.0", len: 8 } }] }],
        },
      },
    }],
  },
  {
    feature: "dynamic sets with timeouts",
    module: "nft_dynset",
    batch: [
      table,
      { add: { set: { ...T, name: "a", type: "ipv4_addr", flags: ["timeout"], timeout: 60 } } },
      chain("d"),
      rule("d", [{
        set: { op: "update", elem: { payload: { protocol: "ip", field: "saddr" } }, set: "@a" },
      }]),
    ],
  },
  {
    feature: "reject",
    module: "nft_reject_inet",
    batch: [
      table,
      chain("r", { type: "filter", hook: "input", prio: 0, policy: "accept" }),
      rule("r", [{ match: { op: "==", left: l4, right: "tcp" } }, {
        reject: { type: "tcp reset" },
      }]),
    ],
  },
];

function versionAtLeast(v: string, min: [number, number, number]): boolean {
  const parts = v.split(".").map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    if ((parts[i] ?? 0) !== min[i]) return (parts[i] ?? 0) > min[i]!;
  }
  return true;
}

/** Reads a sysctl; undefined if absent. */
export type SysctlReader = (key: string) => Promise<string | undefined>;

/**
 * Reads a sysctl from /proc/sys with Deno's file API. Kept for callers not yet
 * moved to readSysctl() (sysctl.ts); that one works under narrowed Deno
 * permissions, this one needs --allow-all.
 */
export async function readProcSysctl(key: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(`/proc/sys/${key.replaceAll(".", "/")}`)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

export async function preflight(
  runner: Runner,
  opts: { sysctl?: SysctlReader; ipv6?: boolean; conntrackCleanup?: boolean } = {},
): Promise<PreflightResult> {
  const res: PreflightResult = { errors: [], warnings: [], nftVersion: "" };
  const ver = await runner.run(["nft", "--version"]).catch((e) => ({
    code: 127,
    stdout: new Uint8Array(),
    stderr: String(e),
  }));
  if (ver.code !== 0) {
    res.errors.push(
      "nft is not installed (Debian/Ubuntu: apt-get install nftables): kpx loads its rules with it",
    );
    return res;
  }
  res.nftVersion = /v(\d+\.\d+(?:\.\d+)?)/.exec(new TextDecoder().decode(ver.stdout))?.[1] ?? "";
  if (!res.nftVersion || !versionAtLeast(res.nftVersion, [1, 0, 0])) {
    res.errors.push(
      `nft ${
        res.nftVersion || "(unknown version)"
      } is too old: kpx needs nftables 1.0.0 or later (tested with 1.0.6)`,
    );
    return res;
  }
  if (!versionAtLeast(res.nftVersion, [1, 0, 6])) {
    res.warnings.push(`nft ${res.nftVersion} is older than 1.0.6, the version kpx is tested with`);
  }
  for (const probe of FEATURE_PROBES) {
    const r = await runner.run(
      ["nft", "-c", "-j", "-f", "-"],
      new TextEncoder().encode(JSON.stringify({ nftables: probe.batch })),
    );
    if (r.code !== 0) {
      const why = r.stderr.trim().split("\n").find((l) => l.trim()) ?? `exit status ${r.code}`;
      res.errors.push(`the kernel lacks ${probe.feature} (module ${probe.module}): ${why}`);
      // nf_tables itself missing makes every other probe fail the same way.
      if (probe.module === "nf_tables") return res;
    }
  }
  const read = opts.sysctl ?? ((key: string) => readSysctl(runner, key));
  let sysctlMissing = false;
  const sysctl = async (key: string): Promise<string | undefined> => {
    if (sysctlMissing) return undefined;
    try {
      return await read(key);
    } catch (e) {
      // Without procps these checks are skipped, not fatal: kpx itself does not need them.
      if (e instanceof CommandFailedError && e.code === 127) {
        sysctlMissing = true;
        res.warnings.push(
          "sysctl (procps) is not installed: forwarding and bridge settings are not checked, and conntrack settings are not applied",
        );
        return undefined;
      }
      throw e;
    }
  };
  if ((await sysctl("net.ipv4.ip_forward")) === "0") {
    res.warnings.push(
      "net.ipv4.ip_forward is 0: service traffic from pods and from outside will not be forwarded (the CNI or the node setup normally enables it)",
    );
  }
  if (opts.ipv6 && (await sysctl("net.ipv6.conf.all.forwarding")) === "0") {
    res.warnings.push(
      "net.ipv6.conf.all.forwarding is 0: IPv6 service traffic will not be forwarded",
    );
  }
  const brnf = await sysctl("net.bridge.bridge-nf-call-iptables");
  if (brnf === "0") {
    res.warnings.push(
      "net.bridge.bridge-nf-call-iptables is 0: traffic between pods on one bridge bypasses netfilter and kpx's rules (load br_netfilter and set it to 1 if your CNI uses a bridge)",
    );
  }
  if (opts.conntrackCleanup !== false) {
    const ct = await runner.run(["conntrack", "--version"]).catch(() => ({ code: 127 }));
    if (ct.code !== 0) {
      res.warnings.push(
        "the conntrack tool is not installed (apt-get install conntrack): stale UDP conntrack entries will not be cleared when endpoints go away",
      );
    }
  }
  return res;
}
