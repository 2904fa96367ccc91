/**
 * The data-plane load generator, run inside the client ("pod") namespace:
 * new TCP connections to the ClusterIPs of synthetic services 0..N-1, picked
 * at random, each reset as soon as it is established (SO_LINGER 0).
 *
 *   ip netns exec NS deno run --no-config --allow-ffi bench/dataplane_client.ts '<ClientSpec JSON>'
 *
 * Two phases, one JSON line of ClientResult on stdout:
 *  1. latency: `latencyProbes` connections one at a time; each one's connect
 *     time (SYN out to SYN-ACK in, i.e. the first packet's trip through the
 *     node's rules and back) without any queueing of our own;
 *  2. rate: `concurrency` connections kept in flight for `durationMs` (after
 *     `warmupMs` not counted); completed connections per second.
 * @module
 */
import {
  closeSocket,
  EINPROGRESS,
  POLLOUT,
  PollTable,
  resettingSocket,
  sockaddr,
  socketError,
  startConnect,
} from "./_socket_ffi.ts";
import { syntheticClusterIP } from "./_cluster_ips.ts";

export interface ClientSpec {
  /** Connect to the ClusterIPs of services 0..services-1. */
  services: number;
  port: number;
  latencyProbes: number;
  warmupMs: number;
  durationMs: number;
  concurrency: number;
  /** A connection not established by then counts as a timeout. */
  timeoutMs: number;
}

export interface ClientResult {
  /** Connect times of the sequential phase, microseconds. */
  latencyUs: { p50: number; p90: number; p99: number; n: number };
  /** Connections per second in the rate phase. */
  rate: number;
  connections: number;
  /** Failed connects by errno ("timeout" for our own deadline). */
  errors: Record<string, number>;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Precomputed sockaddrs: picking a target costs one random number. */
function targets(spec: ClientSpec): Uint8Array<ArrayBuffer>[] {
  return Array.from(
    { length: spec.services },
    (_, i) => sockaddr(syntheticClusterIP(i), spec.port),
  );
}

function pick(addresses: Uint8Array<ArrayBuffer>[]): Uint8Array<ArrayBuffer> {
  return addresses[Math.floor(Math.random() * addresses.length)]!;
}

function latencyPhase(
  spec: ClientSpec,
  addresses: Uint8Array<ArrayBuffer>[],
  errors: Record<string, number>,
): Float64Array {
  const samples: number[] = [];
  const table = new PollTable(1);
  for (let k = 0; k < spec.latencyProbes; k++) {
    const fd = resettingSocket();
    const start = performance.now();
    const r = startConnectChecked(fd, pick(addresses), errors);
    if (r === "pending") {
      table.clear();
      table.add(fd, POLLOUT);
      if (table.wait(spec.timeoutMs) === 0) errors["timeout"] = (errors["timeout"] ?? 0) + 1;
      else {
        const err = socketError(fd);
        if (err === 0) samples.push((performance.now() - start) * 1000);
        else errors[String(err)] = (errors[String(err)] ?? 0) + 1;
      }
    } else if (r === "done") samples.push((performance.now() - start) * 1000);
    closeSocket(fd);
  }
  return Float64Array.from(samples).sort();
}

function startConnectChecked(
  fd: number,
  address: Uint8Array<ArrayBuffer>,
  errors: Record<string, number>,
): "done" | "pending" | "failed" {
  const r = startConnect(fd, address);
  if (r === 0) return "done";
  if (r === EINPROGRESS) return "pending";
  errors[String(r)] = (errors[String(r)] ?? 0) + 1;
  return "failed";
}

/** Keeps `concurrency` connects in flight until `until`; returns how many completed. */
function ratePhase(
  spec: ClientSpec,
  addresses: Uint8Array<ArrayBuffer>[],
  until: number,
  errors: Record<string, number>,
): number {
  const c = spec.concurrency;
  const fds = new Int32Array(c);
  const starts = new Float64Array(c);
  const table = new PollTable(c);
  let ok = 0;
  // Opens a connect in `slot`; connects that finish or fail at once are
  // counted and replaced straight away (the loop ends with one pending).
  const open = (slot: number) => {
    for (;;) {
      const fd = resettingSocket();
      const r = startConnectChecked(fd, pick(addresses), errors);
      if (r === "pending") {
        fds[slot] = fd;
        starts[slot] = performance.now();
        return;
      }
      if (r === "done") ok++;
      closeSocket(fd);
      if (performance.now() >= until) {
        fds[slot] = -1;
        return;
      }
    }
  };
  for (let s = 0; s < c; s++) open(s);
  while (performance.now() < until) {
    table.clear();
    for (let s = 0; s < c; s++) table.add(fds[s]!, POLLOUT);
    table.wait(Math.max(1, Math.min(100, Math.ceil(until - performance.now()))));
    const now = performance.now();
    for (let s = 0; s < c; s++) {
      const fd = fds[s]!;
      if (fd < 0) continue;
      if (table.revents(s) !== 0) {
        const err = socketError(fd);
        if (err === 0) ok++;
        else errors[String(err)] = (errors[String(err)] ?? 0) + 1;
      } else if (now - starts[s]! > spec.timeoutMs) {
        errors["timeout"] = (errors["timeout"] ?? 0) + 1;
      } else continue;
      closeSocket(fd);
      open(s);
    }
  }
  for (const fd of fds) if (fd >= 0) closeSocket(fd);
  return ok;
}

export function runClient(spec: ClientSpec): ClientResult {
  const addresses = targets(spec);
  const errors: Record<string, number> = {};
  const lat = latencyPhase(spec, addresses, errors);
  const warmEnd = performance.now() + spec.warmupMs;
  ratePhase(spec, addresses, warmEnd, {});
  const t0 = performance.now();
  const ok = ratePhase(spec, addresses, t0 + spec.durationMs, errors);
  const seconds = (performance.now() - t0) / 1000;
  return {
    latencyUs: {
      p50: percentile(lat, 0.5),
      p90: percentile(lat, 0.9),
      p99: percentile(lat, 0.99),
      n: lat.length,
    },
    rate: ok / seconds,
    connections: ok,
    errors,
  };
}

if (import.meta.main) {
  const spec = JSON.parse(Deno.args[0] ?? "{}") as ClientSpec;
  for (
    const k of [
      "services",
      "port",
      "latencyProbes",
      "warmupMs",
      "durationMs",
      "concurrency",
      "timeoutMs",
    ] as const
  ) {
    if (!Number.isFinite(spec[k]) || spec[k] < 0) {
      throw new TypeError(`Cannot run the load generator: spec.${k} must be a non-negative number`);
    }
  }
  console.log(JSON.stringify(runClient(spec)));
}
