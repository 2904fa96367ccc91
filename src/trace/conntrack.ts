/**
 * conntrack inside a namespace, with its text output parsed into entries.
 *
 * Note that a namespace only tracks connections once something there uses conntrack (an nft
 * `ct` expression or a nat chain, as kpx's rules do); a bare namespace lists nothing.
 * @module
 */

import { execInNetns, type ExecResult } from "./exec.ts";

/** One direction of a connection as conntrack prints it. */
export interface ConntrackTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** ICMP type/code/id, for icmp and ipv6-icmp entries. */
  type?: number;
  code?: number;
  id?: number;
}

export interface ConntrackEntry {
  family: "ipv4" | "ipv6";
  /** "tcp", "udp", "icmp", "ipv6-icmp", "sctp", … */
  protocol: string;
  protonum: number;
  /** Seconds left; absent in event output. */
  timeout?: number;
  /** TCP state, e.g. "ESTABLISHED", "TIME_WAIT". */
  state?: string;
  original: ConntrackTuple;
  reply: ConntrackTuple;
  /** Bracketed flags, e.g. ["UNREPLIED"], ["ASSURED"]. */
  flags: string[];
  /** Other key=value fields (mark, use, zone, id, …). */
  extra: Record<string, string>;
  /** The line as printed. */
  line: string;
}

export interface ConntrackResult extends ExecResult {
  /** Entries parsed from stdout (listed, or deleted for -D). */
  entries: ConntrackEntry[];
}

const TUPLE_KEYS = new Set(["src", "dst", "sport", "dport", "type", "code", "id"]);
const NUMERIC_TUPLE_KEYS = new Set(["sport", "dport", "type", "code", "id"]);

/**
 * Runs `conntrack <args>` in `ns` and parses the entries it prints. Does not throw on a
 * non-zero exit: conntrack exits 1 when `-D` matched nothing, which tests often expect.
 */
export async function runConntrack(ns: string, args: string[]): Promise<ConntrackResult> {
  const result = await execInNetns(ns, ["conntrack", ...args]);
  if (result.timedOut) {
    throw new Error(`Cannot run conntrack ${args.join(" ")} in ${ns}: timed out`);
  }
  return { ...result, entries: parseConntrackOutput(result.stdout) };
}

/** Lists entries in `ns` (both families); extra args filter, e.g. ["-p", "udp", "--dport", "53"]. */
export async function listConntrack(ns: string, filter: string[] = []): Promise<ConntrackEntry[]> {
  const result = await runConntrack(ns, ["-L", ...filter]);
  if (result.code !== 0) {
    throw new Error(`Cannot list conntrack entries in ${ns}: ${result.stderr.trim()}`);
  }
  return result.entries;
}

/** Parses `conntrack -L` / `-D` / `-o extended` lines; other lines are skipped. */
export function parseConntrackOutput(text: string): ConntrackEntry[] {
  return text.split("\n").map((line) => line.trim()).filter((line) => line.includes("src="))
    .map(parseConntrackLine);
}

export function parseConntrackLine(line: string): ConntrackEntry {
  const tokens = line.split(/\s+/);
  let i = 0;
  let family: "ipv4" | "ipv6" | undefined;
  if (tokens[0] === "ipv4" || tokens[0] === "ipv6") {
    family = tokens[0];
    i = 2; // "ipv4 2"
  }
  const protocol = tokens[i++];
  const protonum = Number(tokens[i++]);
  if (protocol === undefined || !Number.isInteger(protonum)) {
    throw new TypeError(`Cannot parse conntrack line "${line}": no protocol`);
  }
  let timeout: number | undefined;
  if (/^\d+$/.test(tokens[i] ?? "")) timeout = Number(tokens[i++]);
  let state: string | undefined;
  if (tokens[i] !== undefined && !tokens[i]!.includes("=") && !tokens[i]!.startsWith("[")) {
    state = tokens[i++];
  }
  const tuples: Record<string, string>[] = [];
  const flags: string[] = [];
  const extra: Record<string, string> = {};
  for (const token of tokens.slice(i)) {
    if (token.startsWith("[") && token.endsWith("]")) {
      flags.push(token.slice(1, -1));
      continue;
    }
    const eq = token.indexOf("=");
    if (eq < 0) continue;
    const key = token.slice(0, eq);
    const value = token.slice(eq + 1);
    if (key === "src") tuples.push({});
    const current = tuples[tuples.length - 1];
    // `-o id` appends the connection's "id=" after both tuples; only ICMP tuples have their own.
    const inTuple = TUPLE_KEYS.has(key) && (key !== "id" || protocol.includes("icmp"));
    if (current !== undefined && inTuple && !(key in current)) {
      current[key] = value;
    } else {
      extra[key] = value;
    }
  }
  const [original, reply] = tuples;
  if (original === undefined || reply === undefined) {
    throw new TypeError(`Cannot parse conntrack line "${line}": expected two tuples`);
  }
  const entry: ConntrackEntry = {
    family: family ?? (original["src"]?.includes(":") ? "ipv6" : "ipv4"),
    protocol,
    protonum,
    original: toTuple(original, line),
    reply: toTuple(reply, line),
    flags,
    extra,
    line,
  };
  if (timeout !== undefined) entry.timeout = timeout;
  if (state !== undefined) entry.state = state;
  return entry;
}

function toTuple(fields: Record<string, string>, line: string): ConntrackTuple {
  const src = fields["src"];
  const dst = fields["dst"];
  if (src === undefined || dst === undefined) {
    throw new TypeError(`Cannot parse conntrack line "${line}": tuple without src/dst`);
  }
  const tuple: ConntrackTuple = { src, dst };
  for (const key of NUMERIC_TUPLE_KEYS) {
    const value = fields[key];
    if (value !== undefined) {
      (tuple as unknown as Record<string, number>)[key] = Number(value);
    }
  }
  return tuple;
}
