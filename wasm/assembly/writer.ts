// ByteWriter: an append-only UTF-8 buffer. The planner's output is ~100 bytes per
// endpoint at 100k endpoints, so JSON is written straight into bytes instead of
// being assembled from (UTF-16) strings.

export class ByteWriter {
  buf: Uint8Array;
  len: i32 = 0;

  constructor(capacity: i32 = 256) {
    this.buf = new Uint8Array(capacity);
  }

  @inline
  private ensure(n: i32): void {
    if (this.len + n > this.buf.length) this.grow(n);
  }

  private grow(n: i32): void {
    let cap = this.buf.length << 1;
    while (cap < this.len + n) cap <<= 1;
    const next = new Uint8Array(cap);
    memory.copy(next.dataStart, this.buf.dataStart, <usize> this.len);
    this.buf = next;
  }

  byte(b: i32): ByteWriter {
    this.ensure(1);
    unchecked(this.buf[this.len++] = <u8> b);
    return this;
  }

  /** Appends a string as UTF-8 (no quoting). */
  str(s: string): ByteWriter {
    const n = s.length;
    this.ensure(n * 3);
    const base = this.buf.dataStart;
    let at = this.len;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) {
        store<u8>(base + at++, <u8> c);
      } else if (c < 0x800) {
        store<u8>(base + at++, <u8> (0xc0 | (c >> 6)));
        store<u8>(base + at++, <u8> (0x80 | (c & 0x3f)));
      } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        // Surrogate pair: one code point, four UTF-8 bytes (the ensure() above
        // reserved 3 bytes per UTF-16 unit, i.e. 6 for the pair).
        const lo = s.charCodeAt(++i);
        const cp = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        store<u8>(base + at++, <u8> (0xf0 | (cp >> 18)));
        store<u8>(base + at++, <u8> (0x80 | ((cp >> 12) & 0x3f)));
        store<u8>(base + at++, <u8> (0x80 | ((cp >> 6) & 0x3f)));
        store<u8>(base + at++, <u8> (0x80 | (cp & 0x3f)));
      } else {
        store<u8>(base + at++, <u8> (0xe0 | (c >> 12)));
        store<u8>(base + at++, <u8> (0x80 | ((c >> 6) & 0x3f)));
        store<u8>(base + at++, <u8> (0x80 | (c & 0x3f)));
      }
    }
    this.len = at;
    return this;
  }

  /** Appends a JSON string literal: user-derived text never becomes nft syntax. */
  json(s: string): ByteWriter {
    this.byte(0x22);
    const n = s.length;
    let plain = true;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c == 0x22 || c == 0x5c) {
        plain = false;
        break;
      }
    }
    if (plain) {
      this.str(s);
    } else {
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c == 0x22) this.str('\\"');
        else if (c == 0x5c) this.str("\\\\");
        else if (c < 0x20) {
          this.str("\\u00");
          this.byte(hexDigit(c >> 4));
          this.byte(hexDigit(c & 15));
        } else this.str(String.fromCharCode(c));
      }
    }
    this.byte(0x22);
    return this;
  }

  uint(v: u64): ByteWriter {
    if (v == 0) return this.byte(0x30);
    let digits = 0;
    let t = v;
    while (t > 0) {
      digits++;
      t /= 10;
    }
    this.ensure(digits);
    let at = this.len + digits;
    this.len = at;
    const base = this.buf.dataStart;
    while (v > 0) {
      store<u8>(base + --at, <u8> (0x30 + <i32> (v % 10)));
      v /= 10;
    }
    return this;
  }

  /** Copies bytes from elsewhere in memory (e.g. an address in the input). */
  raw(ptr: usize, len: u32): ByteWriter {
    this.ensure(<i32> len);
    memory.copy(this.buf.dataStart + <usize> this.len, ptr, <usize> len);
    this.len += <i32> len;
    return this;
  }

  append(other: ByteWriter): ByteWriter {
    this.ensure(other.len);
    memory.copy(this.buf.dataStart + <usize> this.len, other.buf.dataStart, <usize> other.len);
    this.len += other.len;
    return this;
  }

  reset(): void {
    this.len = 0;
  }

  toString(): string {
    return String.UTF8.decodeUnsafe(this.buf.dataStart, <usize> this.len);
  }
}

function hexDigit(v: i32): i32 {
  return v < 10 ? 0x30 + v : 0x61 + v - 10;
}
