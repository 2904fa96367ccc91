/**
 * What kpx's rules did to each probe, from three independent witnesses:
 * - conntrack in the node namespace: a DNAT target (reply source ≠ original destination) and
 *   a rewritten source (reply destination ≠ original source: masquerade);
 * - the observer table: whether the packet got past kpx's filter chains;
 * - the probe client: refused (TCP RST, ICMP unreachable) or silence.
 *
 * conntrack shows a DNAT → dnat; else seen past kpx's chains → accept (kpx left it alone,
 * whatever the node then made of it); else refused → reject; else → drop.
 * @module
 */

import type { ConntrackEntry } from "./conntrack.ts";
import type { ProbeResult } from "./probe_types.ts";

export type Verdict = "dnat" | "drop" | "reject" | "accept";

/** Order used to break ties between equally frequent verdicts. */
export const VERDICTS: readonly Verdict[] = ["dnat", "reject", "drop", "accept"];

/** What the probe client saw: its failure kind, or "answered". */
export type ProbeAnswer = "answered" | "refused" | "unreachable" | "timeout" | "other";

export interface ProbeOutcome {
  sourcePort: number;
  verdict: Verdict;
  /** DNAT target as "ip:port" ("[ip]:port" for IPv6). */
  endpoint?: string;
  /** The source address or port was rewritten (conntrack's reply tuple). */
  masquerade: boolean;
  /** Reached the observer's chains, after kpx's filter chains. */
  seen: boolean;
  answer: ProbeAnswer;
  /** The probe client's detail, e.g. "ECONNREFUSED". */
  detail: string;
}

export interface ProbeEvidence {
  sourcePort: number;
  result: ProbeResult;
  seen: boolean;
  /** This probe's conntrack entry in the node namespace, if any. */
  conntrack: ConntrackEntry | undefined;
}

export function formatEndpoint(ip: string, port: number | undefined): string {
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return port === undefined ? host : `${host}:${port}`;
}

export function classifyProbe(evidence: ProbeEvidence): ProbeOutcome {
  const { result, conntrack: entry } = evidence;
  const answer: ProbeAnswer = result.ok ? "answered" : result.failure;
  const detail = result.ok ? result.reply : result.detail;
  const dnat = entry !== undefined &&
    (entry.reply.src !== entry.original.dst || entry.reply.sport !== entry.original.dport);
  const masquerade = entry !== undefined &&
    (entry.reply.dst !== entry.original.src || entry.reply.dport !== entry.original.sport);
  const base = { sourcePort: evidence.sourcePort, masquerade, seen: evidence.seen, answer, detail };
  if (dnat) {
    return {
      ...base,
      verdict: "dnat",
      endpoint: formatEndpoint(entry.reply.src, entry.reply.sport),
    };
  }
  if (evidence.seen) return { ...base, verdict: "accept" };
  if (answer === "refused" || answer === "unreachable") return { ...base, verdict: "reject" };
  return { ...base, verdict: "drop" };
}

export interface TraceSummary {
  /** The most frequent verdict (ties: dnat, reject, drop, accept). */
  verdict: Verdict;
  /** Distinct DNAT targets of the probes with the majority verdict, sorted. */
  endpoints: string[];
  /** Any probe with the majority verdict had its source rewritten. */
  masquerade: boolean;
  probes: number;
  /** Probes per verdict (only verdicts that occurred). */
  breakdown: Partial<Record<Verdict, number>>;
  /** DNAT target → probes sent there. */
  hits: Record<string, number>;
  /** Probes with the majority verdict whose source was rewritten. */
  masqueraded: number;
  /** What the probe client saw, e.g. {"timeout": 32}. */
  answers: Partial<Record<ProbeAnswer, number>>;
}

export function summarize(outcomes: readonly ProbeOutcome[]): TraceSummary {
  if (outcomes.length === 0) throw new RangeError("Cannot summarize a trace without probes");
  const breakdown: Partial<Record<Verdict, number>> = {};
  const answers: Partial<Record<ProbeAnswer, number>> = {};
  for (const outcome of outcomes) {
    breakdown[outcome.verdict] = (breakdown[outcome.verdict] ?? 0) + 1;
    answers[outcome.answer] = (answers[outcome.answer] ?? 0) + 1;
  }
  let verdict: Verdict = VERDICTS[0]!;
  for (const candidate of VERDICTS) {
    if ((breakdown[candidate] ?? 0) > (breakdown[verdict] ?? 0)) verdict = candidate;
  }
  const majority = outcomes.filter((o) => o.verdict === verdict);
  const hits: Record<string, number> = {};
  for (const outcome of majority) {
    if (outcome.endpoint !== undefined) hits[outcome.endpoint] = (hits[outcome.endpoint] ?? 0) + 1;
  }
  const masqueraded = majority.filter((o) => o.masquerade).length;
  return {
    verdict,
    endpoints: Object.keys(hits).sort(),
    masquerade: masqueraded > 0,
    probes: outcomes.length,
    breakdown,
    hits,
    masqueraded,
    answers,
  };
}
