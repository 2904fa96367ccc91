/**
 * `kpx trace`'s engine: load a planned batch into a throwaway node namespace, fire real probe
 * packets from the source, and report what kpx's rules did (see classify.ts for how).
 * @module
 */

import type { LocalDetection } from "../planner/mod.ts";
import { type NodeSpec, parseIP, type Service } from "../state/mod.ts";
import {
  classifyProbe,
  type ProbeOutcome,
  summarize,
  type TraceSummary,
  type Verdict,
} from "./classify.ts";
import { type ConntrackEntry, listConntrack } from "./conntrack.ts";
import { describe, runChecked } from "./exec.ts";
import { describeDestination, type Destination, masqueradeReason, pathSteps } from "./explain.ts";
import { TraceLab } from "./lab.ts";
import { loadNftBatch, loadNftText } from "./nft.ts";
import { NftMonitor } from "./nft_monitor.ts";
import { OBSERVER_TABLE, observerRuleset, parseSeenPorts, SEEN_SET } from "./observer.ts";
import { probeFromNetns } from "./probe.ts";
import type { ProbeRequest, ProbeResult, Protocol } from "./probe_types.ts";
import { requireKernelPrereqs } from "./prereqs.ts";
import { selfCommand } from "./self_command.ts";
import { groupTraceBySourcePort, type TraceEvent } from "./trace_events.ts";
import { LAB_ADDRESSES, type SourceKind, sourceKind } from "./topology.ts";

export const DEFAULT_PROBES = 32;
export const MAX_PROBES = 1024;
/**
 * Per-probe deadline. Every answer kpx's rules cause (RST, ICMP error) comes from inside the
 * lab within a millisecond or two; silence for this long is a drop (or a DNAT into the sink).
 */
export const DEFAULT_PROBE_TIMEOUT_MS = 250;
/** Probe source ports come from one range starting at a random point in [low, high). */
const SOURCE_PORTS = { low: 20_000, high: 60_000 };

export interface TraceOptions {
  /** kpx's nftables batch for the node (a full plan, as `kpx plan -o json` prints it). */
  batch: Uint8Array;
  /** The planned Services, to say what the destination is. */
  services: readonly Service[];
  /** The Node the namespace is set up as: its name, addresses and podCIDRs. */
  node: NodeSpec;
  /** How kpx tells pod traffic (the pod's interface is named to match). */
  localDetection: LocalDetection;
  source: string;
  destination: Destination;
  /** Default 32; each from its own source port. */
  probes?: number;
  probeTimeoutMs?: number;
  /** Aborting stops the trace; the namespaces are deleted all the same. */
  signal?: AbortSignal;
  /** argv of the probe client (default: this kpx's hidden `__probe` command). */
  probeCommand?: readonly string[];
}

export interface TraceReport extends TraceSummary {
  node: string;
  source: { ip: string; kind: SourceKind };
  destination: Destination;
  /** What the destination is to kpx. */
  description: string;
  /** kpx chains and maps one probe with the majority verdict went through. */
  path: string[];
  /** Why there is no path (nftables tracing unavailable), if so. */
  pathNote?: string;
  masqueradeReason: string;
  outcomes: ProbeOutcome[];
  elapsedMs: number;
}

interface Observations {
  results: ProbeResult[];
  seen: Set<number>;
  conntrack: ConntrackEntry[];
  trace: Map<number, TraceEvent[]>;
  traceProblem?: string;
}

export async function runTrace(options: TraceOptions): Promise<TraceReport> {
  const started = performance.now();
  const source = canonicalAddress(options.source, "source");
  const destination = {
    ...options.destination,
    ip: canonicalAddress(options.destination.ip, "destination"),
  };
  checkOptions(options, source, destination);
  const prereqs = await requireKernelPrereqs({
    checkNamespaces: false,
    purpose: "kpx trace needs",
  });
  if (!prereqs.ok) throw new Error(`Cannot trace: ${prereqs.message}`);
  options.signal?.throwIfAborted();

  const kind = sourceKind(source, options.node);
  const probes = options.probes ?? DEFAULT_PROBES;
  const firstPort = SOURCE_PORTS.low +
    Math.floor(Math.random() * (SOURCE_PORTS.high - SOURCE_PORTS.low - probes));
  const ports = Array.from({ length: probes }, (_, i) => firstPort + i);
  const observed = await observe(options, { source, destination, kind, ports });

  const byPort = new Map<number, ConntrackEntry>();
  for (const entry of observed.conntrack) {
    const o = entry.original;
    if (o.src !== source || o.dst !== destination.ip || o.dport !== destination.port) continue;
    if (o.sport !== undefined) byPort.set(o.sport, entry);
  }
  const outcomes = ports.map((port, i) =>
    classifyProbe({
      sourcePort: port,
      result: observed.results[i] ?? {
        ok: false,
        failure: "other",
        detail: "the probe client returned no result",
        elapsedMs: 0,
      },
      seen: observed.seen.has(port),
      conntrack: byPort.get(port),
    })
  );
  const summary = summarize(outcomes);
  const events = representativeTrace(outcomes, summary.verdict, observed.trace);
  return {
    ...summary,
    node: options.node.name,
    source: { ip: source, kind },
    destination,
    description: describeDestination(options.services, options.node, destination),
    path: pathSteps(events),
    ...(observed.traceProblem === undefined ? {} : { pathNote: observed.traceProblem }),
    masqueradeReason: masqueradeReasonFor(summary, events),
    outcomes,
    elapsedMs: Math.round(performance.now() - started),
  };
}

function masqueradeReasonFor(summary: TraceSummary, events: readonly TraceEvent[]): string {
  if (summary.verdict === "drop" || summary.verdict === "reject") return "nothing was forwarded";
  if (summary.verdict === "accept" && !summary.masquerade) return "kpx's rules left it alone";
  return masqueradeReason(events, summary.masquerade);
}

function canonicalAddress(text: string, what: string): string {
  const ip = parseIP(text);
  if (ip === null) {
    throw new TypeError(`Cannot trace: ${what} ${JSON.stringify(text)} is not an IP address`);
  }
  return ip.text;
}

function checkOptions(options: TraceOptions, source: string, destination: Destination): void {
  if (source.includes(":") !== destination.ip.includes(":")) {
    throw new TypeError(
      `Cannot trace from ${source} to ${destination.ip}: the addresses are of different families`,
    );
  }
  if (LAB_ADDRESSES.includes(source)) {
    throw new RangeError(
      `Cannot trace from ${source}: the trace's own namespaces use that address`,
    );
  }
  const probes = options.probes ?? DEFAULT_PROBES;
  if (!Number.isInteger(probes) || probes < 1 || probes > MAX_PROBES) {
    throw new RangeError(`Cannot trace: --probes must be 1…${MAX_PROBES}, got ${probes}`);
  }
  const port = destination.port;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot trace to port ${port}: ports are 1…65535`);
  }
}

/** Builds the lab, sends the probes, and collects every witness; the lab is always deleted. */
async function observe(
  options: TraceOptions,
  probe: { source: string; destination: Destination; kind: SourceKind; ports: number[] },
): Promise<Observations> {
  const { source, destination, kind, ports } = probe;
  const signal = options.signal;
  await using lab = await TraceLab.create({
    node: options.node,
    source,
    kind,
    localDetection: options.localDetection,
  });
  signal?.throwIfAborted();
  const ns = lab.topology.node;
  await loadNftBatch(ns, new TextDecoder().decode(options.batch));
  await loadNftText(
    ns,
    observerRuleset({
      source,
      protocol: destination.protocol,
      firstPort: ports[0]!,
      lastPort: ports[ports.length - 1]!,
    }),
  );
  const monitor = NftMonitor.start(ns);
  try {
    // Without trace events the verdict still stands; only the chain path is missing.
    let traceProblem: string | undefined;
    try {
      await monitor.sync();
    } catch (error) {
      traceProblem = describe(error);
    }
    signal?.throwIfAborted();
    const timeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const requests: ProbeRequest[] = ports.map((port) => ({
      ip: destination.ip,
      port: destination.port,
      protocol: destination.protocol,
      timeoutMs,
      sourcePort: port,
      sourceIp: source,
      awaitErrorAfterEperm: true,
    }));
    const results = await probeFromNetns(lab.topology.probeNs, requests, {
      command: options.probeCommand ?? selfCommand("__probe"),
      concurrency: requests.length,
      ...(signal ? { signal } : {}),
    });
    checkProbesSent(results, destination.protocol);
    if (traceProblem === undefined) {
      try {
        await monitor.sync(); // Every trace event of the probes has now been read.
      } catch (error) {
        traceProblem = describe(error);
      }
    }
    const family = source.includes(":") ? "ipv6" : "ipv4";
    const [listing, conntrack] = await Promise.all([
      runChecked(`list the probes seen in ${ns}`, [
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-j",
        "list",
        "set",
        "inet",
        OBSERVER_TABLE,
        SEEN_SET,
      ]),
      listConntrack(ns, ["-f", family, "-p", destination.protocol, "--orig-src", source]),
    ]);
    return {
      results,
      seen: parseSeenPorts(listing.stdout),
      conntrack,
      trace: groupTraceBySourcePort(monitor.lines),
      ...(traceProblem === undefined ? {} : { traceProblem }),
    };
  } finally {
    await monitor.stop();
  }
}

/**
 * A probe the client could not even send (no socket, no bind: "Cannot …" from libc.ts) says
 * nothing about kpx's rules; counting it as a drop would be a lie, so the trace fails instead.
 */
function checkProbesSent(results: readonly ProbeResult[], protocol: Protocol): void {
  const broken = results.find((r) =>
    !r.ok && r.failure === "other" && r.detail.startsWith("Cannot ")
  );
  if (broken === undefined || broken.ok) return;
  const hint = protocol === "sctp"
    ? " (SCTP probes need raw IP sockets for protocol 132, and CAP_NET_RAW)"
    : "";
  throw new Error(`Cannot trace: the probe client could not send a probe: ${broken.detail}${hint}`);
}

/** Trace events of the first probe (by source port) that had the majority verdict. */
function representativeTrace(
  outcomes: readonly ProbeOutcome[],
  verdict: Verdict,
  trace: Map<number, TraceEvent[]>,
): TraceEvent[] {
  for (const outcome of outcomes) {
    if (outcome.verdict !== verdict) continue;
    const events = trace.get(outcome.sourcePort);
    if (events !== undefined) return events;
  }
  return [];
}
