/**
 * IP addresses and CIDRs: parsing to a canonical form (RFC 5952 for IPv6),
 * family, and containment. Everything downstream of src/state/ sees only
 * canonical strings, so equal addresses compare equal.
 */

export type IPFamily = 4 | 6;

export interface ParsedIP {
  family: IPFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
  text: string;
}

export interface ParsedCIDR {
  family: IPFamily;
  bytes: Uint8Array;
  prefix: number;
  /** Canonical "addr/len" with host bits cleared. */
  text: string;
}

function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // Leading zeros are rejected, as Kubernetes does since 1.20 (they were
    // read as octal by some tools and decimal by others).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | null {
  if (s.length < 2 || s.includes("%")) return null;
  let head = s;
  let tail4: Uint8Array | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    tail4 = parseIPv4(s.slice(lastColon + 1));
    if (!tail4) return null;
    head = s.slice(0, lastColon + 1) + "0:0";
  }
  const dbl = head.indexOf("::");
  if (dbl !== head.lastIndexOf("::")) return null;
  const groups: number[] = [];
  const parseGroups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  if (dbl >= 0) {
    const left = parseGroups(head.slice(0, dbl));
    const right = parseGroups(head.slice(dbl + 2));
    if (!left || !right || left.length + right.length > 7) return null;
    groups.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right);
  } else {
    const all = parseGroups(head);
    if (!all || all.length !== 8) return null;
    groups.push(...all);
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tail4) out.set(tail4, 12);
  return out;
}

function formatIPv6(b: Uint8Array): string {
  // RFC 5952 section 5: IPv4-mapped addresses keep the dotted tail.
  if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${Array.from(b.slice(12)).join(".")}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost on ties.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number) => g.toString(16);
  if (best < 0) return groups.map(hex).join(":");
  const left = groups.slice(0, best).map(hex).join(":");
  const right = groups.slice(best + bestLen).map(hex).join(":");
  return `${left}::${right}`;
}

export function formatIP(family: IPFamily, bytes: Uint8Array): string {
  return family === 4 ? Array.from(bytes).join(".") : formatIPv6(bytes);
}

/** Parses an IP address, or returns null. IPv4-mapped IPv6 stays IPv6. */
export function parseIP(s: string): ParsedIP | null {
  if (typeof s !== "string") return null;
  const t = s.trim();
  if (t.includes(":")) {
    const b = parseIPv6(t);
    return b ? { family: 6, bytes: b, text: formatIPv6(b) } : null;
  }
  const b = parseIPv4(t);
  return b ? { family: 4, bytes: b, text: formatIP(4, b) } : null;
}

/** Parses "addr/len"; host bits are cleared (10.0.0.1/8 -> 10.0.0.0/8). */
export function parseCIDR(s: string): ParsedCIDR | null {
  if (typeof s !== "string") return null;
  const t = s.trim();
  const slash = t.indexOf("/");
  if (slash < 0) return null;
  const ip = parseIP(t.slice(0, slash));
  const lenText = t.slice(slash + 1);
  if (!ip || !/^[0-9]{1,3}$/.test(lenText)) return null;
  const prefix = Number(lenText);
  const max = ip.family === 4 ? 32 : 128;
  if (prefix > max) return null;
  const bytes = new Uint8Array(ip.bytes);
  for (let bit = prefix; bit < max; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const text = `${formatIP(ip.family, bytes)}/${prefix}`;
  return { family: ip.family, bytes, prefix, text };
}

export function cidrContains(cidr: ParsedCIDR, ip: ParsedIP): boolean {
  if (cidr.family !== ip.family) return false;
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((cidr.bytes[bit >> 3]! & mask) !== (ip.bytes[bit >> 3]! & mask)) return false;
  }
  return true;
}

/** An address as a host route: "10.0.0.1/32", "fd00::1/128". */
export function hostCIDR(ip: ParsedIP): string {
  return `${ip.text}/${ip.family === 4 ? 32 : 128}`;
}

/**
 * Removes duplicates and CIDRs contained in another of the list, and sorts:
 * nftables interval sets refuse overlapping elements.
 */
export function collapseCIDRs(cidrs: readonly string[]): string[] {
  const parsed = [...new Set(cidrs)].map((c) => parseCIDR(c)).filter((c) => c !== null);
  const kept = parsed.filter((c, i) =>
    !parsed.some((o, j) =>
      j !== i && o.family === c.family && o.prefix <= c.prefix &&
      cidrContains(o, { family: c.family, bytes: c.bytes, text: "" }) &&
      (o.prefix < c.prefix || j < i)
    )
  );
  return kept.map((c) => c.text).sort();
}
