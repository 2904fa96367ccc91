/**
 * The testbed's address plan. Documentation ranges only (RFC 5737 / RFC 3849) for the "lan",
 * private ranges for pods, so nothing here can collide with a real network.
 *
 *   lan 192.0.2.0/24, 2001:db8::/64     gateway .1 / ::1 (in the lan ns), client .100 / ::100
 *   node i                              192.0.2.(10+i), 2001:db8::(10+i)   (e.g. ::10, ::11)
 *   pods of node i                      10.244.i.0/24, fd00:10:244:i::/64; pod k = .(2+k) / ::(2+k)
 *
 * IPv6 host parts reuse the IPv4 digits as text (node 1 → 192.0.2.11 and 2001:db8::11) so the two
 * families read alike. Every address handed out is in canonical form (RFC 5952), the form the
 * kernel and the echo server print, so tests may compare strings.
 * @module
 */

export const LAN_PREFIX_V4 = 24;
export const LAN_PREFIX_V6 = 64;
export const GATEWAY_V4 = "192.0.2.1";
export const GATEWAY_V6 = "2001:db8::1";
export const CLIENT_V4 = "192.0.2.100";
export const CLIENT_V6 = "2001:db8::100";

/**
 * Pods reach their node through these next hops.
 * IPv4: 169.254.1.1 is on no interface; the node's pod-facing veth answers ARP for it with
 * proxy_arp (the Calico pattern), so the pod needs no address from a shared subnet.
 * IPv6: fe80::1 is added to every pod-facing veth on the node (link-local addresses are per
 * interface, so the same one on each veth does not clash) and pods route ::/0 via it.
 */
export const POD_GATEWAY_V4 = "169.254.1.1";
export const POD_GATEWAY_V6 = "fe80::1";

/** The most nodes the plan numbers (pod CIDRs 10.244.0-7.0/24). */
export const MAX_NODES = 8;
/** The most pods per node (.2 … .254). */
export const MAX_PODS_PER_NODE = 253;

export function nodeIPv4(node: number): string {
  return `192.0.2.${10 + node}`;
}

export function nodeIPv6(node: number): string {
  return canonicalIPv6(`2001:db8::${10 + node}`);
}

export function podCidrV4(node: number): string {
  return `10.244.${node}.0/24`;
}

export function podCidrV6(node: number): string {
  return `${canonicalIPv6(`fd00:10:244:${node}::`)}/64`;
}

/** Address of the k-th pod (0-based) of a node. */
export function podIPv4(node: number, k: number): string {
  return `10.244.${node}.${2 + k}`;
}

export function podIPv6(node: number, k: number): string {
  return canonicalIPv6(`fd00:10:244:${node}::${2 + k}`);
}

/** The 16 bytes of an IPv6 literal (no zone, no embedded IPv4). */
export function parseIPv6(text: string): number[] {
  const halves = text.split("::");
  const invalid = () => new TypeError(`Cannot parse IPv6 address "${text}"`);
  if (halves.length > 2) throw invalid();
  const groups = (part: string | undefined): number[] =>
    part === undefined || part === "" ? [] : part.split(":").map((group) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) throw invalid();
      return parseInt(group, 16);
    });
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) throw invalid();
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as "::". */
export function canonicalIPv6(text: string): string {
  const groups = parseIPv6(text);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}

/** "a", "b", … "z", "aa", "ab", … — short suffixes for pod namespace and veth names. */
export function letterSuffix(k: number): string {
  let n = k;
  let text = "";
  do {
    text = String.fromCharCode(97 + (n % 26)) + text;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return text;
}
