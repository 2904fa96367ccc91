/**
 * `kpx trace`: plan the manifests as `kpx plan` does, load the batch into throwaway network
 * namespaces set up as the manifests' Node, send real probes, say what kpx's rules did.
 * `kpx __probe` (hidden): the probe client trace starts inside a namespace.
 */
import type { Logger } from "../log/mod.ts";
import { readManifests } from "../source/mod.ts";
import {
  DEFAULT_PROBES,
  type Destination,
  MAX_PROBES,
  parseBatch,
  type Protocol,
  renderTrace,
  runProbes,
  runTrace,
  traceJson,
  type TraceReport,
} from "../trace/mod.ts";
import { type FlagSpec, parseArgs, UsageError } from "./args.ts";
import type { Output } from "./commands.ts";
import { CONFIG_FLAG, hostname, loadConfigFromArgs } from "./common.ts";
import { planManifests } from "./planning.ts";

export const TRACE_FLAGS: Record<string, FlagSpec> = {
  ...CONFIG_FLAG,
  from: {
    type: "string",
    help:
      "source IP: a node IP (sent by the node itself), an IP in the node's podCIDRs (a pod), or any other (from outside)",
  },
  to: { type: "string", help: "destination IP:PORT ([IPv6]:PORT for IPv6)" },
  protocol: { type: "string", help: "tcp (default), udp or sctp" },
  probes: {
    type: "int",
    help: `probe packets, each from its own source port (default ${DEFAULT_PROBES})`,
  },
  output: { type: "string", short: "o", help: "json, or text (default: readable)" },
};

export const TRACE_USAGE =
  "kpx trace [--config FILE] [flags] --from SRC_IP --to DST_IP:PORT [--protocol tcp|udp|sctp] [--probes N] [--output json] MANIFEST_PATH...";

export const TRACE_HELP = `usage: ${TRACE_USAGE}

Plans the manifests as "kpx plan" does, loads the batch into throwaway network
namespaces set up as the manifests' Node (its addresses and podCIDRs), sends
real probe packets from SRC_IP to DST_IP:PORT, and reports what kpx's rules did:
dnat (with the endpoints hit), drop, reject, or accept (left alone), whether the
source was masqueraded, and the chains and maps the packets went through.
Nothing outside the throwaway namespaces is touched; they are deleted afterwards.
Needs root, ip, nft, conntrack and sysctl.`;

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

export async function traceCommand(argv: string[], log: Logger, out: Output): Promise<number> {
  const args = parseArgs(argv, TRACE_FLAGS);
  const output = (args.flags["output"] as string | undefined) ?? "text";
  if (output !== "json" && output !== "text") {
    throw new UsageError(
      `Cannot trace: --output must be json or text, got ${JSON.stringify(output)}`,
    );
  }
  const source = args.flags["from"] as string | undefined;
  const to = args.flags["to"] as string | undefined;
  if (source === undefined || to === undefined) {
    throw new UsageError(`Cannot trace: --from and --to are required\nusage: ${TRACE_USAGE}`);
  }
  if (args.positionals.length === 0) {
    throw new UsageError(`Cannot trace: no manifest path given\nusage: ${TRACE_USAGE}`);
  }
  const destination = parseDestination(to, parseProtocol(args.flags["protocol"]));
  const probes = (args.flags["probes"] as number | undefined) ?? DEFAULT_PROBES;
  if (probes < 1 || probes > MAX_PROBES) {
    throw new UsageError(`Cannot trace: --probes must be 1…${MAX_PROBES}, got ${probes}`);
  }

  const { config } = await loadConfigFromArgs(args, log);
  if (config.mode === "ipvs") {
    throw new UsageError(
      "Cannot trace: mode ipvs is not supported (kpx trace loads the nftables batch of mode nftables)",
    );
  }
  const planned = await planManifests(await readManifests(args.positionals), config, {
    hostname: hostname(),
  });
  for (const w of planned.warnings) log.warn(w);
  for (const n of planned.notes) log.info(n, {}, 1);
  if (planned.node === null) {
    throw new Error(
      `Cannot trace: the manifests have no Node object named ${
        JSON.stringify(planned.nodeName)
      } (the trace sets its namespace up with the Node's addresses and podCIDRs; set --hostname-override to pick one)`,
    );
  }

  const report = await withStopSignals(log, (signal) =>
    runTrace({
      batch: planned.plan.batch,
      services: planned.services,
      node: planned.node!,
      localDetection: planned.context.localDetection,
      source,
      destination,
      probes,
      signal,
    }));
  if (typeof report === "number") return report;
  log.info("Traced", { verdict: report.verdict, probes: report.probes, ms: report.elapsedMs }, 1);
  await out(output === "json" ? JSON.stringify(traceJson(report)) + "\n" : renderTrace(report));
  return 0;
}

/** `kpx __probe`: reads a probe batch (JSON) on stdin, prints the results (JSON). */
export async function probeCommand(_argv: string[], _log: Logger, out: Output): Promise<number> {
  const input = await new Response(Deno.stdin.readable).text();
  await out(JSON.stringify(runProbes(parseBatch(input))) + "\n");
  return 0;
}

function parseProtocol(value: unknown): Protocol {
  const protocol = String(value ?? "tcp").toLowerCase();
  if (protocol !== "tcp" && protocol !== "udp" && protocol !== "sctp") {
    throw new UsageError(
      `Cannot trace: --protocol must be tcp, udp or sctp, got ${JSON.stringify(value)}`,
    );
  }
  return protocol;
}

/** "10.96.0.10:80" or "[fd00::10]:80". */
export function parseDestination(text: string, protocol: Protocol): Destination {
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(text) ?? /^([0-9.]+):(\d+)$/.exec(text);
  if (match === null) {
    throw new UsageError(
      `Cannot trace: --to must be IP:PORT or [IPv6]:PORT, got ${JSON.stringify(text)}`,
    );
  }
  const port = Number(match[2]);
  if (port < 1 || port > 65535) {
    throw new UsageError(`Cannot trace: port ${port} in --to is not 1…65535`);
  }
  return { ip: match[1]!, port, protocol };
}

/**
 * Runs `work` with SIGINT/SIGTERM turned into an abort: the trace then deletes its namespaces
 * and this returns the signal's exit status instead of the report.
 */
async function withStopSignals(
  log: Logger,
  work: (signal: AbortSignal) => Promise<TraceReport>,
): Promise<TraceReport | number> {
  const controller = new AbortController();
  let received: StopSignal | undefined;
  const handlers = (Object.keys(SIGNAL_EXIT_CODES) as StopSignal[]).map((name) => {
    const handler = () => {
      received ??= name;
      controller.abort(new Error(`Cannot finish the trace: interrupted by ${name}`));
    };
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  try {
    return await work(controller.signal);
  } catch (error) {
    if (received === undefined) throw error;
    log.warn("Trace interrupted; its namespaces are deleted", { signal: received, error });
    return SIGNAL_EXIT_CODES[received];
  } finally {
    for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  }
}
