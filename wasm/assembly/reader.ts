// Reader: decodes the host's little-endian input buffer (see src/planner/encode.ts
// for the layout). A truncated buffer aborts with a message; the host turns the
// trap into an error and keeps the last good rules.

const EMPTY_STRINGS: string[] = [];

export class Reader {
  constructor(public ptr: usize, public end: usize) {}

  @inline
  private need(n: usize): void {
    if (this.ptr + n > this.end) abort("planner input truncated");
  }

  u8(): u8 {
    this.need(1);
    const v = load<u8>(this.ptr);
    this.ptr += 1;
    return v;
  }

  bool(): bool {
    return this.u8() != 0;
  }

  u16(): u16 {
    this.need(2);
    const v = load<u16>(this.ptr);
    this.ptr += 2;
    return v;
  }

  u32(): u32 {
    this.need(4);
    const v = load<u32>(this.ptr);
    this.ptr += 4;
    return v;
  }

  str(): string {
    const n = <usize> this.u32();
    this.need(n);
    const s = String.UTF8.decodeUnsafe(this.ptr, n);
    this.ptr += n;
    return s;
  }

  /** Skips n bytes, returning where they are (zero-copy view of the input). */
  skip(n: u32): usize {
    this.need(<usize> n);
    const at = this.ptr;
    this.ptr += <usize> n;
    return at;
  }

  /** Reads a string and says whether it equals `s` (ASCII), without allocating. */
  strEquals(s: string): bool {
    const n = <usize> this.u32();
    this.need(n);
    let eq = n == <usize> s.length && n > 0;
    for (let i: usize = 0; eq && i < n; i++) {
      if (<i32> load<u8>(this.ptr + i) != s.charCodeAt(<i32> i)) eq = false;
    }
    this.ptr += n;
    return eq;
  }

  /** Reads a string list: (non-empty, contains `s`), without allocating. */
  listHas(s: string): u8 {
    const n = this.u32();
    let has: u8 = 0;
    for (let i: u32 = 0; i < n; i++) if (this.strEquals(s)) has = 1;
    return n == 0 ? 0 : has ? 3 : 1;
  }

  strs(): string[] {
    const n = this.u32();
    if (<usize> n > this.end - this.ptr) abort("planner input: list length out of range");
    // Most lists are empty; share one empty array instead of allocating.
    if (n == 0) return EMPTY_STRINGS;
    const out = new Array<string>(<i32> n);
    for (let i: i32 = 0; i < <i32> n; i++) unchecked(out[i] = this.str());
    return out;
  }

  u32s(): u32[] {
    const n = this.count(4);
    const out = new Array<u32>(n);
    for (let i = 0; i < n; i++) unchecked(out[i] = this.u32());
    return out;
  }

  /** Guards counts before allocating arrays for them. */
  count(minBytesEach: u32): i32 {
    const n = this.u32();
    if (<u64> n * <u64> minBytesEach > <u64> (this.end - this.ptr)) {
      abort("planner input: count out of range");
    }
    return <i32> n;
  }
}
