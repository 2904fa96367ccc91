/**
 * The few libc socket calls the data-plane load generator and its sink need,
 * through FFI. Why not Deno.connect/Deno.listen: a connection-rate benchmark
 * must not be limited by the runtime's async machinery, and it needs
 * SO_LINGER {on, 0} so each connection ends with a RST instead of leaving a
 * TIME_WAIT socket behind (at tens of thousands of connections per second
 * those would exhaust the client's ports within seconds).
 *
 * Imports nothing, so the programs using it run with `--no-config`.
 * Constants are Linux's generic values (x86_64 and aarch64 agree).
 * @module
 */

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_LINGER = 13;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const EAGAIN = 11;
export const EINTR = 4;
export const EINPROGRESS = 115;

const symbols = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];
let libc: Libc | undefined;

function lib(): Libc {
  libc ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return libc;
}

/** errno of the last failed call; read right after it. */
export function errno(): number {
  const p = lib().__errno_location();
  if (p === null) throw new Error("Cannot read errno: __errno_location returned NULL");
  return new Deno.UnsafePointerView(p).getInt32();
}

/** A socket call that failed where the program cannot go on. */
export class SocketError extends Error {
  override name = "SocketError";
  constructor(call: string, readonly errno: number) {
    super(`Cannot ${call}: errno ${errno}`);
  }
}

/** sockaddr_in for an IPv4 literal and port. */
export function sockaddr(ip: string, port: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  bytes.set(ip.split(".").map(Number), 4);
  return bytes;
}

const ONE = new Int32Array([1]);
/** struct linger { l_onoff = 1, l_linger = 0 }: close() sends a RST. */
const LINGER_RESET = new Int32Array([1, 0]);

/** A non-blocking TCP socket whose close() resets the connection. */
export function resettingSocket(): number {
  const fd = lib().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SocketError("open a socket", errno());
  if (lib().setsockopt(fd, SOL_SOCKET, SO_LINGER, LINGER_RESET, 8) < 0) {
    const e = errno();
    lib().close(fd);
    throw new SocketError("set SO_LINGER", e);
  }
  return fd;
}

/** Starts connect(): 0 when connected at once, else the errno (EINPROGRESS: pending). */
export function startConnect(fd: number, address: Uint8Array<ArrayBuffer>): number {
  return lib().connect(fd, address, address.length) === 0 ? 0 : errno();
}

const errorValue = new Int32Array(1);
const errorLength = new Uint32Array([4]);

/** SO_ERROR of a socket whose connect() finished: 0 = connected. */
export function socketError(fd: number): number {
  errorLength[0] = 4;
  if (lib().getsockopt(fd, SOL_SOCKET, SO_ERROR, errorValue, errorLength) < 0) return errno();
  return errorValue[0] ?? 0;
}

export function closeSocket(fd: number): void {
  lib().close(fd);
}

/** A non-blocking listening socket on 0.0.0.0:port. */
export function listenSocket(port: number, backlog: number): number {
  const fd = lib().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SocketError("open a socket", errno());
  lib().setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ONE, 4);
  const address = sockaddr("0.0.0.0", port);
  if (lib().bind(fd, address, address.length) < 0) {
    throw new SocketError(`bind port ${port}`, errno());
  }
  if (lib().listen(fd, backlog) < 0) throw new SocketError(`listen on port ${port}`, errno());
  return fd;
}

/** accept4(): the new descriptor, or -errno (-EAGAIN when none is waiting). */
export function acceptSocket(fd: number): number {
  const r = lib().accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return r >= 0 ? r : -errno();
}

/** A reusable pollfd table for up to `size` descriptors. */
export class PollTable {
  readonly #table: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  #count = 0;
  constructor(size: number) {
    this.#table = new Uint8Array(8 * size);
    this.#view = new DataView(this.#table.buffer);
  }
  clear(): void {
    this.#count = 0;
  }
  add(fd: number, events: number): void {
    const at = 8 * this.#count++;
    this.#view.setInt32(at, fd, true);
    this.#view.setInt16(at + 4, events, true);
    this.#view.setInt16(at + 6, 0, true);
  }
  /** poll(2); the number of ready entries (0 on timeout or EINTR). */
  wait(timeoutMs: number): number {
    const r = lib().poll(this.#table, BigInt(this.#count), timeoutMs);
    if (r < 0) {
      const e = errno();
      if (e === EINTR) return 0;
      throw new SocketError("poll", e);
    }
    return r;
  }
  revents(i: number): number {
    return this.#view.getInt16(8 * i + 6, true);
  }
}
