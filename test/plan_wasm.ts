/**
 * WebAssembly modules for planner tests, written or patched byte by byte: a
 * hand-written module that only reports a version, and the real planner with
 * another ABI version. (A memory limit, to make the real planner trap, is the
 * host's: Planner.load's memoryLimitPages, since the module imports its memory.)
 * Only the sections a patch touches are re-encoded; the rest is copied.
 */
import { PLANNER_WASM_BASE64 } from "../wasm/build/planner_wasm.ts";

/** The built planner's bytes, as Planner.load() gets them by default. */
export function plannerBytes(): Uint8Array<ArrayBuffer> {
  const bin = atob(PLANNER_WASM_BASE64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer (i32.const's immediate). */
function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

class Cursor {
  constructor(readonly bytes: Uint8Array, public pos = 0) {}
  u8(): number {
    const b = this.bytes[this.pos++];
    if (b === undefined) throw new RangeError("Cannot read the module: truncated");
    return b;
  }
  uleb(): number {
    let v = 0, shift = 0, b: number;
    do {
      b = this.u8();
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  }
  name(): string {
    const n = this.uleb();
    const s = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

interface Section {
  id: number;
  body: Uint8Array;
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

function sectionsOf(bytes: Uint8Array): Section[] {
  const c = new Cursor(bytes, 8);
  const out: Section[] = [];
  while (c.pos < bytes.length) {
    const id = c.u8();
    const len = c.uleb();
    out.push({ id, body: bytes.subarray(c.pos, c.pos + len) });
    c.pos += len;
  }
  return out;
}

function assemble(sections: readonly Section[]): Uint8Array<ArrayBuffer> {
  const parts: number[] = [...HEADER];
  for (const s of sections) parts.push(s.id, ...uleb(s.body.length), ...s.body);
  return new Uint8Array(parts);
}

function vec(items: readonly number[][]): Uint8Array {
  return new Uint8Array([...uleb(items.length), ...items.flat()]);
}

/** A module exporting functions that return constants: `{ abiVersion: 99 }`. */
export function constModule(exports: Record<string, number>): Uint8Array<ArrayBuffer> {
  const names = Object.keys(exports);
  const text = new TextEncoder();
  return assemble([
    { id: 1, body: vec([[0x60, 0x00, 0x01, 0x7f]]) }, // type 0: () -> i32
    { id: 3, body: vec(names.map(() => [0x00])) }, // every function has type 0
    {
      id: 7,
      body: vec(names.map((n, i) => [...uleb(n.length), ...text.encode(n), 0x00, ...uleb(i)])),
    },
    {
      id: 10,
      body: vec(names.map((n) => {
        const code = [0x00, 0x41, ...sleb(exports[n]!), 0x0b]; // no locals; i32.const v; end
        return [...uleb(code.length), ...code];
      })),
    },
  ]);
}

/** Index (among all functions, imports first) of an exported function. */
function exportedFunction(sections: readonly Section[], name: string): number {
  const exp = sections.find((s) => s.id === 7);
  if (!exp) throw new TypeError("Cannot patch the module: no export section");
  const c = new Cursor(exp.body);
  for (let n = c.uleb(); n > 0; n--) {
    const got = c.name();
    const kind = c.u8();
    const index = c.uleb();
    if (got === name && kind === 0) return index;
  }
  throw new TypeError(`Cannot patch the module: no exported function ${name}`);
}

function importedFunctions(sections: readonly Section[]): number {
  const imp = sections.find((s) => s.id === 2);
  if (!imp) return 0;
  const c = new Cursor(imp.body);
  let funcs = 0;
  for (let n = c.uleb(); n > 0; n--) {
    c.name();
    c.name();
    const kind = c.u8();
    if (kind === 0) {
      funcs++;
      c.uleb();
    } else if (kind === 1) {
      c.u8();
      if (c.u8() & 1) c.uleb();
      c.uleb();
    } else if (kind === 2) {
      if (c.u8() & 1) c.uleb();
      c.uleb();
    } else if (kind === 3) {
      c.u8();
      c.u8();
    } else throw new TypeError(`Cannot patch the module: import kind ${kind}`);
  }
  return funcs;
}

/**
 * The module with `name` (an exported `() -> i32` returning a constant, as
 * abiVersion() is) returning `value` instead. Everything else is unchanged.
 */
export function withConstant(
  bytes: Uint8Array,
  name: string,
  value: number,
): Uint8Array<ArrayBuffer> {
  const sections = sectionsOf(bytes);
  const index = exportedFunction(sections, name) - importedFunctions(sections);
  const code = sections.find((s) => s.id === 10);
  if (!code || index < 0) throw new TypeError(`Cannot patch the module: ${name} has no body`);
  const c = new Cursor(code.body);
  const bodies: number[][] = [];
  for (let n = c.uleb(), i = 0; i < n; i++) {
    const len = c.uleb();
    const body = [...code.body.subarray(c.pos, c.pos + len)];
    c.pos += len;
    if (i === index) {
      // Expect exactly: no locals, i32.const <v>, end.
      if (body[0] !== 0x00 || body[1] !== 0x41 || body[body.length - 1] !== 0x0b) {
        throw new TypeError(`Cannot patch the module: ${name} does not return a constant`);
      }
      bodies.push([0x00, 0x41, ...sleb(value), 0x0b]);
    } else {
      bodies.push(body);
    }
  }
  const newCode = vec(bodies.map((b) => [...uleb(b.length), ...b]));
  return assemble(sections.map((s) => s === code ? { id: 10, body: newCode } : s));
}
