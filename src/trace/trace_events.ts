/**
 * nftables trace events (`nft monitor` text, nft 1.0.x) parsed and grouped per probe.
 *
 *   trace id 42dee7e2 inet kpx services rule ip daddr . … vmap @service-ips4 (verdict goto class-clusterip)
 *   trace id 42dee7e2 inet kpx filter-forward packet: iif "kpxpod0" … tcp sport 20001 tcp dport 80 …
 *
 * The trace id names a packet buffer, not a flow, and the kernel may reuse one for a later
 * packet; a "packet:" line (printed when the packet enters a base chain) carries the source
 * port, so events are attributed to the probe whose port the id's latest packet line showed.
 * @module
 */

export interface TraceEvent {
  family: string;
  table: string;
  chain: string;
  kind: "packet" | "rule" | "policy" | "verdict" | "other";
  /** The rule as nft prints it ("rule" events), or the rest of the line. */
  text: string;
  /** "accept", "drop", "continue", "jump", "goto", "return" … ("rule"/"policy"/"verdict"). */
  verdict?: string;
  /** Chain a jump or goto went to. */
  target?: string;
}

const LINE = /^trace id ([0-9a-f]+) (\S+) (\S+) (\S+) (.*)$/;
const RULE = /^rule (.*) \(verdict (\S+)(?: (\S+))?\)$/;
const SOURCE_PORT = /\b(?:tcp|udp|sctp|th) sport (\d+)\b/;

export function parseTraceLine(line: string): { id: string; event: TraceEvent } | undefined {
  const match = LINE.exec(line.trim());
  if (match === null) return undefined;
  const [, id = "", family = "", table = "", chain = "", rest = ""] = match;
  const base = { family, table, chain };
  if (rest.startsWith("packet: ")) {
    return { id, event: { ...base, kind: "packet", text: rest.slice("packet: ".length) } };
  }
  const rule = RULE.exec(rest);
  if (rule !== null) {
    const [, text = "", verdict = "", target] = rule;
    return {
      id,
      event: { ...base, kind: "rule", text, verdict, ...(target ? { target } : {}) },
    };
  }
  const word = /^(policy|verdict) (\S+)(?: (\S+))?/.exec(rest);
  if (word !== null) {
    const [, kind = "", verdict = "", target] = word;
    return {
      id,
      event: {
        ...base,
        kind: kind as "policy" | "verdict",
        text: rest.trim(),
        verdict,
        ...(kind === "verdict" && target ? { target } : {}),
      },
    };
  }
  return { id, event: { ...base, kind: "other", text: rest.trim() } };
}

/** Trace events per probe source port, in the order nft reported them. */
export function groupTraceBySourcePort(lines: readonly string[]): Map<number, TraceEvent[]> {
  const byPort = new Map<number, TraceEvent[]>();
  const portOfId = new Map<string, number>();
  for (const line of lines) {
    const parsed = parseTraceLine(line);
    if (parsed === undefined) continue;
    const { id, event } = parsed;
    if (event.kind === "packet") {
      const port = SOURCE_PORT.exec(event.text)?.[1];
      if (port !== undefined) portOfId.set(id, Number(port));
    }
    const port = portOfId.get(id);
    if (port === undefined) continue;
    const events = byPort.get(port) ?? [];
    events.push(event);
    byPort.set(port, events);
  }
  return byPort;
}
