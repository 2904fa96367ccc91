/**
 * A trace report for people (a few lines) and for programs (one JSON object).
 * @module
 */

import { VERDICTS } from "./classify.ts";
import { formatDestination } from "./explain.ts";
import type { TraceReport } from "./trace.ts";

const SOURCE_WORDS = {
  node: "the node itself",
  pod: "a pod of the node",
  outside: "outside the node",
} as const;

/** The JSON form: verdict, endpoints, masquerade, probes first, then the details. */
export function traceJson(report: TraceReport): Record<string, unknown> {
  return {
    verdict: report.verdict,
    endpoints: report.endpoints,
    masquerade: report.masquerade,
    probes: report.probes,
    breakdown: report.breakdown,
    hits: report.hits,
    masqueraded: report.masqueraded,
    answers: report.answers,
    node: report.node,
    source: report.source,
    destination: report.destination,
    description: report.description,
    path: report.path,
    ...(report.pathNote === undefined ? {} : { pathNote: report.pathNote }),
    masqueradeReason: report.masqueradeReason,
    elapsedMs: report.elapsedMs,
  };
}

export function renderTrace(report: TraceReport): string {
  const dst = formatDestination(report.destination);
  const lines = [
    `${report.source.ip} → ${dst} on node ${report.node}: ${report.probes} probe(s) from ${
      SOURCE_WORDS[report.source.kind]
    }`,
    `${dst} is ${report.description}`,
    `verdict: ${report.verdict} (${verdictCount(report)})`,
    `path: ${
      report.path.length > 0
        ? report.path.join(" → ")
        : report.pathNote === undefined
        ? "no kpx rule acted on it"
        : `unknown (${report.pathNote})`
    }`,
  ];
  if (report.endpoints.length > 0) {
    lines.push(
      `endpoints: ${report.endpoints.map((e) => `${e} ×${report.hits[e] ?? 0}`).join(", ")}`,
    );
  }
  const masquerade = !report.masquerade
    ? "no"
    : report.masqueraded === (report.breakdown[report.verdict] ?? 0)
    ? "yes"
    : `yes for ${report.masqueraded} of ${report.breakdown[report.verdict] ?? 0}`;
  lines.push(`masquerade: ${masquerade} (${report.masqueradeReason})`);
  lines.push(
    `answers: ${
      Object.entries(report.answers).map(([answer, n]) => `${n} ${answerWords(answer)}`).join(", ")
    }`,
  );
  return lines.join("\n") + "\n";
}

function verdictCount(report: TraceReport): string {
  const own = report.breakdown[report.verdict] ?? 0;
  const others = VERDICTS.filter((v) => v !== report.verdict && (report.breakdown[v] ?? 0) > 0)
    .map((v) => `${report.breakdown[v]} ${v}`);
  return `${own} of ${report.probes} probes${others.length > 0 ? `; ${others.join(", ")}` : ""}`;
}

function answerWords(answer: string): string {
  switch (answer) {
    case "refused":
      return "refused (TCP RST or ICMP unreachable)";
    case "timeout":
      return "without an answer";
    case "unreachable":
      return "ICMP host/net unreachable";
    case "answered":
      return "answered";
    default:
      return "failed otherwise";
  }
}
