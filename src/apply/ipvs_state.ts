/**
 * The kernel's IPVS table as values: `ipvsadm -Ln` parsed (with each real
 * server's connection counts, which graceful removal needs and `ipvsadm -S`
 * does not print), and the ownership rule that decides which virtual
 * services kpx may change.
 */
import {
  type IPVSForward,
  type IPVSProtocol,
  realKey,
  type RealServer,
  serviceKey,
  type VirtualService,
} from "../planner/mod.ts";
import { cidrContains, parseCIDR, parseIP } from "../state/mod.ts";

export interface KernelReal extends RealServer {
  activeConns: number;
  inactiveConns: number;
}

export interface KernelService extends Omit<VirtualService, "reals"> {
  reals: KernelReal[];
}

/** Virtual services by serviceKey(). */
export type IPVSTable = Map<string, KernelService>;

const PROTOCOLS: Record<string, IPVSProtocol> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
const FORWARDS: Record<string, IPVSForward> = {
  Masq: "masq",
  // A real server at one of the node's own addresses is listed as "Local":
  // IPVS delivers to it locally whatever method was asked. kpx only asks for
  // masq, so that is what it means here.
  Local: "masq",
  Route: "route",
  Tunnel: "tunnel",
};

function hostPort(text: string, line: string): { address: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)$/.exec(text);
  if (!m) {
    throw new SyntaxError(
      `Cannot parse ipvsadm -Ln line "${line}": bad address ${JSON.stringify(text)}`,
    );
  }
  return { address: (m[1] ?? m[2])!.toLowerCase(), port: Number(m[3]) };
}

/**
 * Parses `ipvsadm -Ln` (optionally of one service). Firewall-mark services
 * (FWM) are skipped: kpx never creates them and never touches them.
 */
export function parseIpvsList(text: string): IPVSTable {
  const out: IPVSTable = new Map();
  let current: KernelService | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (
      line === "" || line.startsWith("IP Virtual Server") || line.startsWith("Prot ") ||
      /^\s+-> RemoteAddress/.test(line)
    ) continue;
    const words = line.trim().split(/\s+/);
    if (words[0] === "->") {
      if (current === null) continue; // a real server of a skipped FWM service
      const [, addr, fwd, weight, active, inactive] = words;
      const forward = FORWARDS[fwd ?? ""];
      if (!addr || !forward || inactive === undefined) {
        throw new SyntaxError(
          `Cannot parse ipvsadm -Ln line "${line}": expected address, forward, weight and connections`,
        );
      }
      current.reals.push({
        ...hostPort(addr, line),
        forward,
        weight: Number(weight),
        activeConns: Number(active),
        inactiveConns: Number(inactive),
      });
      continue;
    }
    const protocol = PROTOCOLS[words[0] ?? ""];
    if (words[0] === "FWM") {
      current = null;
      continue;
    }
    if (!protocol || words.length < 3) {
      throw new SyntaxError(`Cannot parse ipvsadm -Ln line "${line}"`);
    }
    const at = hostPort(words[1]!, line);
    const p = words.indexOf("persistent");
    current = {
      protocol,
      ...at,
      scheduler: words[2]!,
      persistence: p > 0 ? Number(words[p + 1]) : 0,
      reals: [],
    };
    out.set(serviceKey(current), current);
  }
  for (const s of out.values()) {
    s.reals.sort((a, b) => (realKey(a) < realKey(b) ? -1 : realKey(a) > realKey(b) ? 1 : 0));
  }
  return out;
}

/** Whether two services are programmed the same (connection counts aside). */
export function sameService(
  a: Omit<VirtualService, "reals"> & { reals: readonly RealServer[] },
  b: typeof a,
): boolean {
  if (
    a.scheduler !== b.scheduler || a.persistence !== b.persistence ||
    a.reals.length !== b.reals.length
  ) return false;
  const bk = new Map(b.reals.map((r) => [realKey(r), r]));
  return a.reals.every((r) => {
    const o = bk.get(realKey(r));
    return o !== undefined && o.weight === r.weight && o.forward === r.forward;
  });
}

/** Node ports in the API server's default range (--service-node-port-range). */
export const NODE_PORT_RANGE = { min: 30000, max: 32767 } as const;

export interface Ownership {
  /** Addresses on kube-ipvs0 now: the interface is kpx's (or kube-proxy's before it). */
  boundAddresses: ReadonlySet<string>;
  /** Node addresses node ports are planned on. */
  nodeIPs: ReadonlySet<string>;
  /** Keys kpx created or manages (its memory of what it applied). */
  known: ReadonlySet<string>;
  /** ipvs.excludeCIDRs: virtual services kpx must leave alone. */
  excludeCIDRs: readonly string[];
}

/**
 * Whether kpx may change or delete a virtual service it does not plan (pure).
 * Never one in excludeCIDRs. Otherwise one it remembers, one on a kube-ipvs0
 * address, or a node port on a node address within the default node-port
 * range: after a restart kpx has no memory, and a virtual service on a node
 * address outside that range may be someone else's (keepalived, a manual
 * one), so it is left alone.
 */
export function ownsService(
  s: Pick<VirtualService, "protocol" | "address" | "port">,
  o: Ownership,
): boolean {
  const ip = parseIP(s.address);
  if (
    ip && o.excludeCIDRs.some((c) => {
      const cidr = parseCIDR(c);
      return cidr !== null && cidrContains(cidr, ip);
    })
  ) return false;
  if (o.known.has(serviceKey(s)) || o.boundAddresses.has(s.address)) return true;
  return o.nodeIPs.has(s.address) && s.port >= NODE_PORT_RANGE.min && s.port <= NODE_PORT_RANGE.max;
}
