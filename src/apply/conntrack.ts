/**
 * Stale conntrack entries for UDP services, as kube-proxy clears them. UDP has
 * no connection end: a client that keeps sending keeps its conntrack entry,
 * and with it the DNAT to an endpoint that is gone (or, before a service had
 * endpoints, no DNAT at all). So after a sync:
 * - for every endpoint a UDP service port stopped using, delete the flows to
 *   the service's addresses (and node port) that were DNATed to it;
 * - for a UDP service port that went from no usable endpoint to some, delete
 *   the flows to its addresses, so clients are DNATed afresh;
 * - for a deleted UDP service, delete the flows to its addresses.
 */
import type { ServiceChange } from "../planner/mod.ts";
import type { Service, ServicePort } from "../state/mod.ts";
import type { Runner } from "./process.ts";

export interface ConntrackFilter {
  family: 4 | 6;
  /** Original destination (service address); absent for node ports. */
  origDst?: string;
  origDstPort: number;
  /** The endpoint the flow was DNATed to; absent: any. */
  replySrc?: string;
  /** Why, for logs. */
  reason: string;
}

function usable(p: ServicePort): Map<string, { address: string; port: number }> {
  // Ready, or terminating but still serving (the fallback kpx may use).
  const out = new Map<string, { address: string; port: number }>();
  for (const e of p.endpoints) {
    if (e.ready || (e.serving && e.terminating)) out.set(`${e.address}|${e.port}`, e);
  }
  return out;
}

function familyOf(ip: string): 4 | 6 {
  return ip.includes(":") ? 6 : 4;
}

function addresses(s: Service): string[] {
  return [...s.clusterIPs, ...s.externalIPs, ...s.loadBalancerIPs];
}

/** The flows to delete after `change` is applied. Pure. */
export function staleFlows(change: ServiceChange): ConntrackFilter[] {
  const { old, now } = change;
  const out: ConntrackFilter[] = [];
  const seen = new Set<string>();
  const add = (f: ConntrackFilter) => {
    const k = `${f.family}|${f.origDst}|${f.origDstPort}|${f.replySrc}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(f);
    }
  };
  if (old) {
    for (const op of old.ports) {
      if (op.protocol !== "UDP") continue;
      const np = now?.ports.find((p) => p.protocol === "UDP" && p.port === op.port);
      const before = usable(op);
      const after = np ? usable(np) : new Map();
      const id = `${old.id}:${op.port}/udp`;
      if (!now || !np) {
        for (const ip of addresses(old)) {
          add({ family: familyOf(ip), origDst: ip, origDstPort: op.port, reason: `${id} removed` });
        }
        continue;
      }
      for (const [k, e] of before) {
        if (after.has(k)) continue;
        for (const ip of addresses(old)) {
          if (familyOf(ip) !== familyOf(e.address)) continue;
          add({
            family: familyOf(ip),
            origDst: ip,
            origDstPort: op.port,
            replySrc: e.address,
            reason: `${id}: endpoint ${e.address} gone`,
          });
        }
        if (op.nodePort > 0) {
          add({
            family: familyOf(e.address),
            origDstPort: op.nodePort,
            replySrc: e.address,
            reason: `${id}: endpoint ${e.address} gone (node port)`,
          });
        }
      }
    }
  }
  if (now) {
    for (const np of now.ports) {
      if (np.protocol !== "UDP") continue;
      const op = old?.ports.find((p) => p.protocol === "UDP" && p.port === np.port);
      const hadAny = op ? usable(op).size > 0 : false;
      if (hadAny || usable(np).size === 0) continue;
      const id = `${now.id}:${np.port}/udp`;
      for (const ip of addresses(now)) {
        add({
          family: familyOf(ip),
          origDst: ip,
          origDstPort: np.port,
          reason: `${id}: first endpoint`,
        });
      }
      if (np.nodePort > 0) {
        for (const family of [4, 6] as const) {
          if (now.clusterIPs.some((ip) => familyOf(ip) === family)) {
            add({ family, origDstPort: np.nodePort, reason: `${id}: first endpoint (node port)` });
          }
        }
      }
    }
  }
  return out;
}

export function conntrackArgs(f: ConntrackFilter): string[] {
  const args = ["conntrack", "-D", "-f", f.family === 4 ? "ipv4" : "ipv6", "-p", "udp"];
  if (f.origDst) args.push("--orig-dst", f.origDst);
  args.push("--orig-port-dst", String(f.origDstPort));
  if (f.replySrc) args.push("--reply-src", f.replySrc);
  return args;
}

export interface CleanupResult {
  filters: number;
  deleted: number;
  errors: string[];
}

/** Deletes flows matching the filters with the conntrack tool. */
export async function clearFlows(
  runner: Runner,
  filters: readonly ConntrackFilter[],
  concurrency = 4,
): Promise<CleanupResult> {
  const res: CleanupResult = { filters: filters.length, deleted: 0, errors: [] };
  const queue = [...filters];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const argv = conntrackArgs(f);
      const r = await runner.run(argv);
      // conntrack -D says "N flow entries have been deleted" on stderr and
      // exits 1 when N is 0: that is success for us.
      const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(r.stderr);
      if (m) res.deleted += Number(m[1]);
      else if (r.code !== 0) {
        res.errors.push(
          `Cannot delete conntrack entries (${f.reason}): ${
            r.stderr.trim() || `exit status ${r.code}`
          }`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, filters.length) }, worker));
  return res;
}
