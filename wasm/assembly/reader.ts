// Reader: decodes the host's little-endian input buffer (see src/planner/encode.ts
// for the layout). A truncated buffer aborts with a message; the host turns the
// trap into an error and keeps the last good rules.

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
    const n = <usize>this.u32();
    this.need(n);
    const s = String.UTF8.decodeUnsafe(this.ptr, n);
    this.ptr += n;
    return s;
  }

  strs(): string[] {
    const n = this.u32();
    if (<usize>n > this.end - this.ptr) abort("planner input: list length out of range");
    const out = new Array<string>(<i32>n);
    for (let i: i32 = 0; i < <i32>n; i++) unchecked((out[i] = this.str()));
    return out;
  }

  /** Guards counts before allocating arrays for them. */
  count(minBytesEach: u32): i32 {
    const n = this.u32();
    if (<u64>n * <u64>minBytesEach > <u64>(this.end - this.ptr)) {
      abort("planner input: count out of range");
    }
    return <i32>n;
  }
}
