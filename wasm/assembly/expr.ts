// JSON fragments of nftables expressions (libnftables-json(5)), written once
// here so the rest of the planner composes them by name.

export const T = '"family":"inet","table":"kpx"';

export const L4PROTO = '{"meta":{"key":"l4proto"}}';
export const DPORT = '{"payload":{"protocol":"th","field":"dport"}}';
export const MARK = '{"meta":{"key":"mark"}}';
export const CT_STATE_NEW = '{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"new"}}';
/** The connection was DNATed (by the nat chains, earlier on its first packet). */
export const CT_STATUS_DNAT = '{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}}';
export const CT_STATE_INVALID =
  '{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"invalid"}}';
export const FIB_DADDR_LOCAL =
  '{"match":{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}}';
export const FIB_SADDR_LOCAL =
  '{"match":{"op":"==","left":{"fib":{"result":"type","flags":["saddr"]}},"right":"local"}}';
export const DROP = '{"drop":null}';
export const RETURN = '{"return":null}';

export function daddr(v6: bool): string {
  return v6
    ? '{"payload":{"protocol":"ip6","field":"daddr"}}'
    : '{"payload":{"protocol":"ip","field":"daddr"}}';
}

export function saddr(v6: bool): string {
  return v6
    ? '{"payload":{"protocol":"ip6","field":"saddr"}}'
    : '{"payload":{"protocol":"ip","field":"saddr"}}';
}

export function nfproto(v6: bool): string {
  return '{"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"' +
    (v6 ? "ipv6" : "ipv4") + '"}}';
}

export function natFamily(v6: bool): string {
  return v6 ? "ip6" : "ip";
}

export function addrType(v6: bool): string {
  return v6 ? '"ipv6_addr"' : '"ipv4_addr"';
}

export function concat(parts: string[]): string {
  return '{"concat":[' + parts.join(",") + "]}";
}

export function match(op: string, left: string, right: string): string {
  return '{"match":{"op":"' + op + '","left":' + left + ',"right":' + right + "}}";
}

export function setRef(name: string): string {
  return jsonString("@" + name);
}

export function vmap(key: string, mapName: string): string {
  return '{"vmap":{"key":' + key + ',"data":' + setRef(mapName) + "}}";
}

/** A JSON string literal. Names are validated by the host; this is defence in depth. */
export function jsonString(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c == 0x22 || c == 0x5c) plain = false;
  }
  if (plain) return '"' + s + '"';
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22 || c == 0x5c) out += "\\" + String.fromCharCode(c);
    else if (c < 0x20) out += "\\u00" + (c < 16 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

export function jump(chain: string): string {
  return '{"jump":{"target":' + jsonString(chain) + "}}";
}

export function goto(chain: string): string {
  return '{"goto":{"target":' + jsonString(chain) + "}}";
}

/** meta mark |= bits: marks the packet for masquerading in postrouting. */
export function markMasquerade(bits: u32): string {
  return '{"mangle":{"key":' + MARK + ',"value":{"|":[' + MARK + "," + bits.toString() + "]}}}";
}

/**
 * A typed constant usable inside a concatenated lookup key. nft 1.0.6's JSON
 * parser cannot type a bare number inside a concatenation, and a numgen value
 * is an untyped integer that no named set type accepts; `meta mark & 0 | c`
 * has the type of a mark and the value c whatever the packet's mark is.
 */
export function slotConst(c: u32): string {
  const zero = '{"&":[' + MARK + ",0]}";
  return c == 0 ? zero : '{"|":[' + zero + "," + c.toString() + "]}";
}

/** An address or CIDR string as nft JSON: "10.0.0.1" or a prefix object. */
export function prefixOrAddr(s: string): string {
  const slash = s.indexOf("/");
  if (slash < 0) return '"' + s + '"';
  return '{"prefix":{"addr":"' + s.substring(0, slash) + '","len":' + s.substring(slash + 1) + "}}";
}
