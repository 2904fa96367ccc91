/**
 * Types shared by probe_client.ts (runs inside a namespace) and whoever starts it (`kpx trace`,
 * the test testbed).
 * @module
 */

/** "sctp" sends one INIT chunk over a raw IP socket and needs `sourceIp` (see sctp.ts). */
export type Protocol = "tcp" | "udp" | "sctp";

/** One request to an echo server (or, in `kpx trace`, a probe nobody answers but kpx). */
export interface ProbeRequest {
  /** Destination IPv4 or IPv6 literal. */
  ip: string;
  port: number;
  protocol: Protocol;
  /** Whole-request deadline (connect + reply). Default 1000 ms. */
  timeoutMs?: number;
  /** Bind this source port (e.g. to test session affinity or conntrack tuples). */
  sourcePort?: number;
  /** Bind this source address (default: chosen by the kernel's route lookup; SCTP needs it). */
  sourceIp?: string;
  /**
   * UDP/SCTP: when send() fails with EPERM (the sender's own output hook discarded the
   * datagram), keep waiting until the deadline for the ICMP error a reject sends back, and fail
   * with "other"/"EPERM" only if none comes. Default false: fail with EPERM at once.
   */
  awaitErrorAfterEperm?: boolean;
}

/**
 * How a request failed:
 * - "timeout": no answer before the deadline (a silent drop),
 * - "refused": TCP RST, ICMP port (or protocol) unreachable, or an SCTP ABORT (a reject),
 * - "unreachable": ICMP host/net unreachable or administratively prohibited, or no route,
 * - "other": anything else (detail says what; "EPERM" is a drop by the sender's own output
 *   rules, which refuse locally made packets with an error instead of losing them).
 */
export type ProbeFailure = "timeout" | "refused" | "unreachable" | "other";

/** An echo server answered with `<pod> <peer>` (SCTP: any reply but ABORT; pod and peer ""). */
export interface ProbeSuccess {
  ok: true;
  /** Name the echo server was started with (pod name or hostNetwork server name). */
  pod: string;
  /** Client address as the server saw it (IPv4-mapped IPv6 is unmapped). */
  peer: string;
  /** The raw reply line. */
  reply: string;
  /** Local (source) port this request used. */
  sourcePort: number;
  elapsedMs: number;
}

export interface ProbeError {
  ok: false;
  failure: ProbeFailure;
  /** errno name or a short explanation, e.g. "ECONNREFUSED". */
  detail: string;
  /** Local port, when the socket got one before failing. */
  sourcePort?: number;
  elapsedMs: number;
}

export type ProbeResult = ProbeSuccess | ProbeError;

/** What probe_client.ts reads as JSON on stdin. */
export interface ProbeBatch {
  requests: ProbeRequest[];
  /** How many requests are in flight at once. Default 64. */
  concurrency?: number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 1000;
