/**
 * The trace's own nftables table in the node namespace (never kpx's): it watches the probes
 * without changing what happens to them.
 *
 * - `trace-*` chains (priority -400, before conntrack and every kpx chain) turn on nftables
 *   tracing for the probes, so `nft monitor` reports each kpx chain and rule they meet.
 * - `seen-*` chains (priority 100, after kpx's filter chains at -10 and its DNAT at -100) add
 *   the source port of every probe packet that got that far to the set `seen`: a probe kpx
 *   dropped or rejected never gets there.
 * - `ready` is a set the trace adds marker elements to: `nft monitor` reporting one proves the
 *   monitor is listening (and, later, that it has reported every earlier event).
 *
 * Probes are told apart by their source ports: each uses its own, from one range.
 * @module
 */

import type { Protocol } from "./probe_types.ts";

export const OBSERVER_TABLE = "kpxtrace";
export const SEEN_SET = "seen";
export const READY_SET = "ready";

/** Before conntrack (-200) and every kpx chain (-110 and later). */
const TRACE_PRIORITY = -400;
/** After kpx's filter chains (-10). */
const SEEN_PRIORITY = 100;

export interface ProbeSelector {
  source: string;
  protocol: Protocol;
  firstPort: number;
  lastPort: number;
}

/** nft match for the probe packets (not the replies: those come from elsewhere). */
export function probeMatch(probes: ProbeSelector): string {
  const family = probes.source.includes(":") ? "ip6" : "ip";
  return `${family} saddr ${probes.source} meta l4proto ${probes.protocol} ` +
    `th sport ${probes.firstPort}-${probes.lastPort}`;
}

/** The observer table in nft's text syntax, for `nft -f -`. */
export function observerRuleset(probes: ProbeSelector): string {
  const match = probeMatch(probes);
  const chain = (name: string, hook: string, priority: number, rule: string) =>
    `  chain ${name} {\n    type filter hook ${hook} priority ${priority}; policy accept;\n` +
    `    ${rule}\n  }\n`;
  const trace = `${match} meta nftrace set 1`;
  const seen = `${match} add @${SEEN_SET} { th sport }`;
  return `table inet ${OBSERVER_TABLE} {\n` +
    `  set ${SEEN_SET} { type inet_service; flags dynamic; }\n` +
    `  set ${READY_SET} { type inet_service; }\n` +
    chain("trace-prerouting", "prerouting", TRACE_PRIORITY, trace) +
    chain("trace-output", "output", TRACE_PRIORITY, trace) +
    chain("seen-input", "input", SEEN_PRIORITY, seen) +
    chain("seen-forward", "forward", SEEN_PRIORITY, seen) +
    chain("seen-output", "output", SEEN_PRIORITY, seen) +
    "}\n";
}

/** Source ports in `nft -j list set inet kpxtrace seen` output. */
export function parseSeenPorts(listing: string): Set<number> {
  const parsed = JSON.parse(listing) as { nftables?: Array<Record<string, unknown>> };
  const ports = new Set<number>();
  for (const item of parsed.nftables ?? []) {
    const set = item["set"] as { elem?: unknown[] } | undefined;
    for (const element of set?.elem ?? []) {
      // Plain values, or {"elem": {"val": …}} when nft adds per-element details.
      const value = typeof element === "object" && element !== null
        ? (element as { elem?: { val?: unknown } }).elem?.val
        : element;
      if (typeof value === "number") ports.add(value);
    }
  }
  return ports;
}
