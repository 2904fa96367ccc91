/**
 * BSD sockets through libc FFI, for probe_client.ts only.
 *
 * Why not Deno.connect / node:net / node:dgram: none of them can report an ICMP port unreachable
 * on a UDP socket (Deno's node:dgram swallows it; an unconnected socket never sees it), and
 * Deno.connect cannot bind a source port. A connected, non-blocking socket driven by poll(2)
 * gives every outcome the kernel knows: RST and ICMP port unreachable → ECONNREFUSED, ICMP
 * host/net unreachable → EHOSTUNREACH/ENETUNREACH, silence → our own deadline.
 *
 * Constants are Linux's generic values (identical on x86_64 and aarch64).
 * @module
 */

import { parseIP } from "../state/mod.ts";

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
/** Raw IP: we write the transport header (SCTP probes on a kernel without SCTP sockets). */
export const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const IPPROTO_IP = 0;
const IP_RECVERR = 11;
const IPPROTO_IPV6 = 41;
const IPV6_RECVERR = 25;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;

/** errno values used to classify outcomes. */
export const Errno = {
  EPERM: 1,
  EINTR: 4,
  EAGAIN: 11,
  EACCES: 13,
  ENONET: 64,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  ESOCKTNOSUPPORT: 94,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
  EINPROGRESS: 115,
} as const;

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(Errno).map(([name, value]) => [value, name]),
);

/** "ECONNREFUSED" for 111, "errno 5" for values this module does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t results read as i32: our buffers are small and -1 truncates to -1.
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];
let libc: Libc | undefined;

function lib(): Libc {
  if (libc === undefined) {
    try {
      libc = Deno.dlopen("libc.so.6", symbols).symbols;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(
        `Cannot load libc.so.6 for probe sockets: ${reason} (the probe client needs --allow-ffi)`,
        { cause: error },
      );
    }
  }
  return libc;
}

/** errno of the last failed libc call; read it right after the call, before any other. */
function lastErrno(): number {
  const pointer = lib().__errno_location();
  if (pointer === null) throw new Error("Cannot read errno: __errno_location returned NULL");
  return new Deno.UnsafePointerView(pointer).getInt32();
}

/** A failed socket call, carrying the errno so callers can classify it. */
export class SocketCallError extends Error {
  readonly errno: number;
  constructor(call: string, errno: number) {
    super(`Cannot ${call}: ${errnoName(errno)}`);
    this.name = "SocketCallError";
    this.errno = errno;
  }
}

/** Encodes an IPv4 or IPv6 literal and port as sockaddr_in / sockaddr_in6. */
export function encodeSockaddr(ip: string, port: number): { family: number; bytes: Uint8Array } {
  if (ip.includes(":")) {
    const bytes = new Uint8Array(28);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, AF_INET6, true);
    view.setUint16(2, port, false);
    bytes.set(ipv6Bytes(ip), 8);
    return { family: AF_INET6, bytes };
  }
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  bytes.set(addressBytes(ip, 4), 4);
  return { family: AF_INET, bytes };
}

function ipv6Bytes(ip: string): Uint8Array {
  return addressBytes(ip, 6);
}

function addressBytes(ip: string, family: 4 | 6): Uint8Array {
  const parsed = parseIP(ip);
  if (parsed === null || parsed.family !== family) {
    throw new TypeError(`Cannot parse IPv${family} address "${ip}"`);
  }
  return parsed.bytes;
}

/**
 * Opens a non-blocking socket; `kind` is SOCK_STREAM, SOCK_DGRAM or SOCK_RAW (then `protocol`
 * is the IP protocol number the socket sends and receives).
 */
export function openSocket(family: number, kind: number, protocol = 0): number {
  const fd = lib().socket(family, kind | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new SocketCallError("open socket", lastErrno());
  return fd;
}

/** Binds to a source address/port (SO_REUSEADDR so a fixed source port can be reused). */
export function bindSocket(fd: number, ip: string, port: number): void {
  const one = new Int32Array([1]);
  if (lib().setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) < 0) {
    throw new SocketCallError("set SO_REUSEADDR", lastErrno());
  }
  const { bytes } = encodeSockaddr(ip, port);
  if (lib().bind(fd, bytes, bytes.length) < 0) {
    throw new SocketCallError(`bind ${ip} port ${port}`, lastErrno());
  }
}

/**
 * Asks the kernel to report every ICMP error on this UDP (or raw) socket. Without it Linux passes on
 * only "hard" errors (port unreachable) and silently ignores host/net unreachable, which would
 * then look like a drop.
 */
export function enableRecvErr(fd: number, family: number): void {
  const one = new Int32Array([1]);
  const [level, option] = family === AF_INET6
    ? [IPPROTO_IPV6, IPV6_RECVERR]
    : [IPPROTO_IP, IP_RECVERR];
  if (lib().setsockopt(fd, level, option, one, 4) < 0) {
    throw new SocketCallError("enable ICMP error reporting", lastErrno());
  }
}

/** Starts connect(); returns 0 when done, EINPROGRESS when pending, else the errno. */
export function startConnect(fd: number, ip: string, port: number): number {
  const { bytes } = encodeSockaddr(ip, port);
  return lib().connect(fd, bytes, bytes.length) === 0 ? 0 : lastErrno();
}

/** Pending socket error (SO_ERROR), cleared by reading it; 0 when none. */
export function socketError(fd: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (lib().getsockopt(fd, SOL_SOCKET, SO_ERROR, value, length) < 0) {
    throw new SocketCallError("read SO_ERROR", lastErrno());
  }
  return value[0] ?? 0;
}

/** Local port the kernel chose (or we bound). */
export function localPort(fd: number): number {
  const address = new Uint8Array(28);
  const length = new Uint32Array([28]);
  if (lib().getsockname(fd, address, length) < 0) {
    throw new SocketCallError("read local address", lastErrno());
  }
  return new DataView(address.buffer).getUint16(2, false);
}

/** send(); returns bytes sent or the negated errno. */
export function sendBytes(fd: number, data: Uint8Array): number {
  const sent = lib().send(fd, data, BigInt(data.length), 0);
  return sent >= 0 ? sent : -lastErrno();
}

/** recv() into `buffer`; returns bytes read (0 = EOF) or the negated errno. */
export function receiveBytes(fd: number, buffer: Uint8Array): number {
  const read = lib().recv(fd, buffer, BigInt(buffer.length), 0);
  return read >= 0 ? read : -lastErrno();
}

export function closeSocket(fd: number): void {
  lib().close(fd);
}

/**
 * poll(2) over `interest` (fd → events); returns fd → revents for ready fds.
 * EINTR counts as "nothing ready".
 */
export function pollSockets(interest: Map<number, number>, timeoutMs: number): Map<number, number> {
  const fds = [...interest.keys()];
  const table = new Uint8Array(8 * fds.length);
  const view = new DataView(table.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(8 * i, fd, true);
    view.setInt16(8 * i + 4, interest.get(fd) ?? 0, true);
  });
  const ready = lib().poll(table, BigInt(fds.length), Math.max(0, Math.ceil(timeoutMs)));
  const result = new Map<number, number>();
  if (ready < 0) {
    const errno = lastErrno();
    if (errno === Errno.EINTR) return result;
    throw new SocketCallError("poll sockets", errno);
  }
  fds.forEach((fd, i) => {
    const revents = view.getInt16(8 * i + 6, true);
    if (revents !== 0) result.set(fd, revents);
  });
  return result;
}
