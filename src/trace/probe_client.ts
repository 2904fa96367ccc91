/**
 * Probe client: run inside a network namespace, sends requests (to echo servers, or in
 * `kpx trace` to whatever kpx's rules make of them) and prints one JSON array of results (see
 * probe_types.ts) on stdout.
 *
 *   ip netns exec NS kpx __probe < batch.json
 *   ip netns exec NS deno run --allow-ffi probe_client.ts < batch.json
 *
 * Every request has its own socket (so its own source port) and its own deadline; up to
 * `concurrency` are in flight at once, multiplexed with poll(2) in this one process.
 * @module
 */

import {
  bindSocket,
  closeSocket,
  enableRecvErr,
  encodeSockaddr,
  Errno,
  errnoName,
  localPort,
  openSocket,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  pollSockets,
  receiveBytes,
  sendBytes,
  SOCK_DGRAM,
  SOCK_RAW,
  SOCK_STREAM,
  SocketCallError,
  socketError,
  startConnect,
} from "./libc.ts";
import {
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeBatch,
  type ProbeFailure,
  type ProbeRequest,
  type ProbeResult,
} from "./probe_types.ts";
import { firstChunkType, isAbort, SCTP_PROTOCOL, sctpInitPacket } from "./sctp.ts";

const DEFAULT_CONCURRENCY = 64;
const MAX_REPLY_BYTES = 4096;
const UDP_PAYLOAD = new TextEncoder().encode("kpx-probe\n");
/** IPv4 raw sockets receive the IP header too; its length is in the first byte's low nibble. */
const IPV4_HEADER_WORDS_MASK = 0x0f;
/** Where an unbound SCTP probe's source port is drawn from (Linux's ephemeral range). */
const EPHEMERAL_PORTS = { first: 32768, count: 28232 };

interface InFlight {
  readonly index: number;
  readonly request: ProbeRequest;
  readonly fd: number;
  readonly startedAt: number;
  readonly deadline: number;
  stage: "connecting" | "reading";
  sourcePort: number | undefined;
  reply: string;
  /** send() failed with this errno and we wait for an ICMP error anyway (awaitErrorAfterEperm). */
  sendErrno?: number;
}

function classify(errno: number): ProbeFailure {
  switch (errno) {
    case Errno.ECONNREFUSED:
    case Errno.ECONNRESET:
    case Errno.ENOPROTOOPT: // ICMP protocol unreachable: the host has no SCTP
      return "refused";
    case Errno.ENETUNREACH:
    case Errno.EHOSTUNREACH:
    case Errno.EHOSTDOWN:
    case Errno.ENONET:
    case Errno.EACCES: // ICMPv6 administratively prohibited
      return "unreachable";
    case Errno.ETIMEDOUT:
      return "timeout";
    default:
      return "other";
  }
}

/** Runs all requests; results are in request order. */
export function runProbes(batch: ProbeBatch): ProbeResult[] {
  const results: (ProbeResult | undefined)[] = new Array(batch.requests.length);
  const concurrency = Math.max(1, batch.concurrency ?? DEFAULT_CONCURRENCY);
  const inFlight = new Map<number, InFlight>();
  let next = 0;

  const finish = (probe: InFlight, result: ProbeResult): void => {
    closeSocket(probe.fd);
    inFlight.delete(probe.fd);
    results[probe.index] = result;
  };
  const fail = (probe: InFlight, failure: ProbeFailure, detail: string): void => {
    finish(probe, {
      ok: false,
      failure,
      detail,
      ...(probe.sourcePort === undefined ? {} : { sourcePort: probe.sourcePort }),
      elapsedMs: Math.round(performance.now() - probe.startedAt),
    });
  };
  const failErrno = (probe: InFlight, errno: number): void =>
    fail(probe, classify(errno), errnoName(errno));

  while (next < batch.requests.length || inFlight.size > 0) {
    while (next < batch.requests.length && inFlight.size < concurrency) {
      const index = next++;
      const request = batch.requests[index];
      if (request === undefined) continue;
      const started = start(index, request);
      if ("fd" in started) inFlight.set(started.fd, started);
      else results[index] = started;
    }
    if (inFlight.size === 0) continue;

    const now = performance.now();
    const interest = new Map<number, number>();
    let wait = Infinity;
    for (const probe of inFlight.values()) {
      interest.set(probe.fd, probe.stage === "connecting" ? POLLOUT : POLLIN);
      wait = Math.min(wait, probe.deadline - now);
    }
    const ready = pollSockets(interest, wait);

    for (const [fd, revents] of ready) {
      const probe = inFlight.get(fd);
      if (probe === undefined) continue;
      if (probe.stage === "connecting") {
        const errno = socketError(fd);
        if (errno !== 0) {
          failErrno(probe, errno);
          continue;
        }
        probe.stage = "reading";
        probe.sourcePort = localPort(fd);
        continue;
      }
      if ((revents & (POLLERR | POLLHUP)) !== 0 && (revents & POLLIN) === 0) {
        const errno = socketError(fd);
        if (errno !== 0) failErrno(probe, errno);
        else fail(probe, "other", "connection closed without a reply");
        continue;
      }
      readReply(probe, finish, fail, failErrno);
    }

    const after = performance.now();
    for (const probe of [...inFlight.values()]) {
      if (after < probe.deadline) continue;
      if (probe.sendErrno !== undefined) failErrno(probe, probe.sendErrno);
      else fail(probe, "timeout", `no answer within ${probe.deadline - probe.startedAt} ms`);
    }
  }
  return results.map((r, i) =>
    r ?? { ok: false, failure: "other", detail: `request ${i} was not run`, elapsedMs: 0 }
  );
}

/** Opens, binds and connects a socket; UDP and SCTP also send their datagram. */
function start(index: number, request: ProbeRequest): InFlight | ProbeResult {
  const startedAt = performance.now();
  const timeoutMs = request.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const failed = (failure: ProbeFailure, detail: string): ProbeResult => ({
    ok: false,
    failure,
    detail,
    elapsedMs: Math.round(performance.now() - startedAt),
  });
  const sctp = request.protocol === "sctp";
  let fd: number;
  let family: number;
  try {
    family = encodeSockaddr(request.ip, request.port).family;
    fd = sctp
      ? openSocket(family, SOCK_RAW, SCTP_PROTOCOL)
      : openSocket(family, request.protocol === "tcp" ? SOCK_STREAM : SOCK_DGRAM);
  } catch (error) {
    // A bad address or a socket the kernel refuses fails this probe; anything else (libc not
    // loadable) would fail every probe alike and is the client's failure, not a verdict.
    if (error instanceof TypeError || error instanceof SocketCallError) {
      return failed("other", error.message);
    }
    throw error;
  }
  const probe: InFlight = {
    index,
    request,
    fd,
    startedAt,
    deadline: startedAt + timeoutMs,
    stage: "connecting",
    sourcePort: undefined,
    reply: "",
  };
  try {
    if (request.protocol !== "tcp") enableRecvErr(fd, family);
    // A raw socket has no ports: the SCTP source port is written into the packet instead.
    const bindPort = sctp ? 0 : request.sourcePort;
    if (bindPort !== undefined || request.sourceIp !== undefined) {
      const anyAddress = request.ip.includes(":") ? "::" : "0.0.0.0";
      bindSocket(fd, request.sourceIp ?? anyAddress, bindPort ?? 0);
    }
    const errno = startConnect(fd, request.ip, sctp ? 0 : request.port);
    if (errno !== 0 && errno !== Errno.EINPROGRESS) {
      closeSocket(fd);
      return failed(classify(errno), errnoName(errno));
    }
    if (request.protocol !== "tcp") {
      // A connected UDP (or raw) socket: the kernel reports ICMP errors for it as socket errors.
      probe.stage = "reading";
      probe.sourcePort = sctp ? request.sourcePort ?? randomEphemeralPort() : localPort(fd);
      const payload = sctp ? sctpInit(probe.sourcePort, request.port) : UDP_PAYLOAD;
      const sent = sendBytes(fd, payload);
      if (sent === -Errno.EPERM && request.awaitErrorAfterEperm === true) {
        // A reject in the output hook drops the datagram (EPERM) and then sends the ICMP error.
        probe.sendErrno = Errno.EPERM;
      } else if (sent < 0) {
        closeSocket(fd);
        return failed(classify(-sent), errnoName(-sent));
      }
    }
  } catch (error) {
    closeSocket(fd);
    if (error instanceof SocketCallError) return failed("other", error.message);
    throw error;
  }
  return probe;
}

function sctpInit(sourcePort: number, destinationPort: number): Uint8Array {
  const [tag = 1, tsn = 0] = crypto.getRandomValues(new Uint32Array(2));
  return sctpInitPacket({ sourcePort, destinationPort, initiateTag: tag || 1, initialTsn: tsn });
}

function randomEphemeralPort(): number {
  const [value = 0] = crypto.getRandomValues(new Uint32Array(1));
  return EPHEMERAL_PORTS.first + (value % EPHEMERAL_PORTS.count);
}

function readReply(
  probe: InFlight,
  finish: (probe: InFlight, result: ProbeResult) => void,
  fail: (probe: InFlight, failure: ProbeFailure, detail: string) => void,
  failErrno: (probe: InFlight, errno: number) => void,
): void {
  const buffer = new Uint8Array(MAX_REPLY_BYTES);
  const read = receiveBytes(probe.fd, buffer);
  if (read < 0) {
    if (-read !== Errno.EAGAIN) failErrno(probe, -read);
    return;
  }
  if (probe.request.protocol === "sctp") {
    readSctpReply(probe, buffer.subarray(0, read), finish, fail);
    return;
  }
  probe.reply += new TextDecoder().decode(buffer.subarray(0, read));
  const newline = probe.reply.indexOf("\n");
  const complete = newline >= 0 || read === 0 || probe.request.protocol === "udp";
  if (!complete) return;
  const line = (newline >= 0 ? probe.reply.slice(0, newline) : probe.reply).trim();
  if (line === "") {
    fail(probe, "other", "connection closed without a reply");
    return;
  }
  const space = line.indexOf(" ");
  finish(probe, {
    ok: true,
    pod: space < 0 ? line : line.slice(0, space),
    peer: space < 0 ? "" : unmapIPv4(line.slice(space + 1).trim()),
    reply: line,
    sourcePort: probe.sourcePort ?? 0,
    elapsedMs: Math.round(performance.now() - probe.startedAt),
  });
}

/** Any SCTP packet back from the peer: ABORT is a refusal, anything else an answer. */
function readSctpReply(
  probe: InFlight,
  received: Uint8Array,
  finish: (probe: InFlight, result: ProbeResult) => void,
  fail: (probe: InFlight, failure: ProbeFailure, detail: string) => void,
): void {
  const headerBytes = probe.request.ip.includes(":")
    ? 0
    : ((received[0] ?? 0) & IPV4_HEADER_WORDS_MASK) * 4;
  const packet = received.subarray(headerBytes);
  if (isAbort(packet)) {
    fail(probe, "refused", "SCTP ABORT");
    return;
  }
  finish(probe, {
    ok: true,
    pod: "",
    peer: "",
    reply: `sctp chunk type ${firstChunkType(packet) ?? "none"}`,
    sourcePort: probe.sourcePort ?? 0,
    elapsedMs: Math.round(performance.now() - probe.startedAt),
  });
}

function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

export function parseBatch(text: string): ProbeBatch {
  const value: unknown = JSON.parse(text);
  if (
    typeof value !== "object" || value === null || !Array.isArray((value as ProbeBatch).requests)
  ) {
    throw new TypeError('Cannot read probe batch: expected {"requests": [...]} on stdin');
  }
  return value as ProbeBatch;
}

/** The probe client as a program: a ProbeBatch as JSON on stdin, results as JSON on stdout. */
export async function probeMain(): Promise<void> {
  const input = await new Response(Deno.stdin.readable).text();
  const results = runProbes(parseBatch(input));
  const bytes = new TextEncoder().encode(JSON.stringify(results) + "\n");
  let written = 0;
  while (written < bytes.length) written += await Deno.stdout.write(bytes.subarray(written));
}

if (import.meta.main) await probeMain();
