/**
 * IPVS mode's desired state as values: virtual services with their real
 * servers, parsed from and written as ipvsadm-restore lines (the planner's
 * output format and what `ipvsadm -S -n` prints), so the planned state and
 * the kernel's are compared in one model.
 */
import type { PlanOutput } from "./types.ts";

export type IPVSProtocol = "tcp" | "udp" | "sctp";

/** How IPVS forwards to a real server: kpx uses masq (NAT) only. */
export type IPVSForward = "masq" | "route" | "tunnel";

export interface RealServer {
  address: string;
  port: number;
  weight: number;
  forward: IPVSForward;
}

export interface VirtualService {
  protocol: IPVSProtocol;
  address: string;
  port: number;
  scheduler: string;
  /** Persistence timeout in seconds (ClientIP affinity); 0: not persistent. */
  persistence: number;
  /** Sorted by realKey(). */
  reals: RealServer[];
}

/** What one Kubernetes service contributes in IPVS mode. */
export interface ServiceIPVS {
  id: string;
  /** Addresses kube-ipvs0 must hold for it. */
  binds: string[];
  /** Sorted by serviceKey(). */
  services: VirtualService[];
}

/** The planner's IPVS side of a plan. */
export interface IPVSPlan {
  /** Full plan: every service; delta: the changed ones as they are now (empty: gone). */
  records: ServiceIPVS[];
  /** Full plan: every address kube-ipvs0 must hold, sorted; delta: empty. */
  addresses: string[];
}

/** A plan of IPVS mode: the nftables batch plus the IPVS side. */
export interface IPVSPlanOutput extends PlanOutput {
  ipvs: IPVSPlan;
}

export function isIPVSPlanOutput(o: PlanOutput): o is IPVSPlanOutput {
  return "ipvs" in o;
}

const PROTO_FLAG: Record<IPVSProtocol, string> = { tcp: "-t", udp: "-u", sctp: "--sctp-service" };
const FLAG_PROTO: Record<string, IPVSProtocol> = {
  "-t": "tcp",
  "--tcp-service": "tcp",
  "-u": "udp",
  "--udp-service": "udp",
  "--sctp-service": "sctp",
};
const FORWARD_FLAG: Record<IPVSForward, string> = { masq: "-m", route: "-g", tunnel: "-i" };
const FLAG_FORWARD: Record<string, IPVSForward> = {
  "-m": "masq",
  "--masquerading": "masq",
  "-g": "route",
  "--gatewaying": "route",
  "-i": "tunnel",
  "--ipip": "tunnel",
};

export function hostPort(address: string, port: number): string {
  return `${address.includes(":") ? `[${address}]` : address}:${port}`;
}

/** `-t 10.96.0.10:80`: identifies a virtual service (ipvsadm's service option). */
export function serviceKey(s: Pick<VirtualService, "protocol" | "address" | "port">): string {
  return `${PROTO_FLAG[s.protocol]} ${hostPort(s.address, s.port)}`;
}

/** `10.244.0.5:8080`: identifies a real server within its virtual service. */
export function realKey(r: Pick<RealServer, "address" | "port">): string {
  return hostPort(r.address, r.port);
}

/** `-A` line options after the service option: scheduler and persistence. */
export function serviceOptions(s: VirtualService): string {
  return `-s ${s.scheduler}${s.persistence > 0 ? ` -p ${s.persistence}` : ""}`;
}

export function realOptions(r: RealServer): string {
  return `${FORWARD_FLAG[r.forward]} -w ${r.weight}`;
}

/** ipvsadm-restore text of virtual services (in the given order). */
export function formatRestore(services: Iterable<VirtualService>): string {
  let out = "";
  for (const s of services) {
    const key = serviceKey(s);
    out += `-A ${key} ${serviceOptions(s)}\n`;
    for (const r of s.reals) out += `-a ${key} -r ${realKey(r)} ${realOptions(r)}\n`;
  }
  return out;
}

function parseHostPort(text: string, line: string): { address: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new SyntaxError(
      `Cannot parse ipvsadm line "${line}": bad address ${JSON.stringify(text)}`,
    );
  }
  return { address: (m[1] ?? m[2])!.toLowerCase(), port };
}

function sortServices(services: Iterable<VirtualService>): VirtualService[] {
  const out = [...services];
  for (const s of out) s.reals.sort((a, b) => cmp(realKey(a), realKey(b)));
  return out.sort((a, b) => cmp(serviceKey(a), serviceKey(b)));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Parses -A and -a lines (as ipvsadm -S -n prints them and the planner
 * writes them) into virtual services sorted by key. Firewall-mark services
 * (-f) are skipped: kpx never creates them. Options kpx does not use (-M,
 * -b, -x, -y) are accepted and ignored.
 */
export function parseRestore(text: string): VirtualService[] {
  const byKey = new Map<string, VirtualService>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const words = line.split(/\s+/);
    const verb = words[0];
    if (verb !== "-A" && verb !== "-a") {
      throw new SyntaxError(`Cannot parse ipvsadm line "${line}": not -A or -a`);
    }
    let protocol: IPVSProtocol | undefined;
    let at: { address: string; port: number } | undefined;
    let scheduler = "";
    let persistence = 0;
    let real: { address: string; port: number } | undefined;
    let forward: IPVSForward = "route";
    let weight = 1;
    let fwmark = false;
    for (let i = 1; i < words.length; i++) {
      const w = words[i]!;
      const next = () => {
        const v = words[++i];
        if (v === undefined) {
          throw new SyntaxError(`Cannot parse ipvsadm line "${line}": ${w} needs a value`);
        }
        return v;
      };
      if (FLAG_PROTO[w]) {
        protocol = FLAG_PROTO[w];
        at = parseHostPort(next(), line);
      } else if (w === "-f" || w === "--fwmark-service") {
        fwmark = true;
        next();
      } else if (w === "-s" || w === "--scheduler") scheduler = next();
      else if (w === "-p" || w === "--persistent") {
        // -p takes an optional timeout; ipvsadm -S always prints it.
        const v = words[i + 1];
        persistence = v !== undefined && /^\d+$/.test(v) ? Number(words[++i]) : 300;
      } else if (w === "-r" || w === "--real-server") real = parseHostPort(next(), line);
      else if (FLAG_FORWARD[w]) forward = FLAG_FORWARD[w];
      else if (w === "-w" || w === "--weight") weight = Number(next());
      else if (
        [
          "-M",
          "--netmask",
          "-b",
          "--sched-flags",
          "-x",
          "--u-threshold",
          "-y",
          "--l-threshold",
          "--pe",
        ].includes(w)
      ) next();
      else throw new SyntaxError(`Cannot parse ipvsadm line "${line}": unknown option ${w}`);
    }
    if (fwmark) continue;
    if (!protocol || !at) {
      throw new SyntaxError(`Cannot parse ipvsadm line "${line}": no service address`);
    }
    const key = serviceKey({ protocol, ...at });
    if (verb === "-A") {
      if (!scheduler) throw new SyntaxError(`Cannot parse ipvsadm line "${line}": no scheduler`);
      byKey.set(key, {
        protocol,
        ...at,
        scheduler,
        persistence,
        reals: byKey.get(key)?.reals ?? [],
      });
    } else {
      if (!real) throw new SyntaxError(`Cannot parse ipvsadm line "${line}": no real server`);
      const vs = byKey.get(key);
      if (!vs) {
        throw new SyntaxError(
          `Cannot parse ipvsadm line "${line}": real server of an undeclared service`,
        );
      }
      vs.reals.push({ ...real, weight, forward });
    }
  }
  return sortServices(byKey.values());
}

/** Parses one planner record: `svc <id>`, `bind <address>` lines, then -A/-a lines. */
export function parseIPVSRecord(text: string): ServiceIPVS {
  const lines = text.split("\n");
  const head = lines[0] ?? "";
  if (!head.startsWith("svc ")) {
    throw new SyntaxError(`Cannot parse IPVS record: it starts with ${JSON.stringify(head)}`);
  }
  const binds: string[] = [];
  let i = 1;
  for (; i < lines.length && lines[i]!.startsWith("bind "); i++) binds.push(lines[i]!.slice(5));
  return { id: head.slice(4), binds, services: parseRestore(lines.slice(i).join("\n")) };
}

/** The whole desired state of a full plan: every virtual service, sorted. */
export function allServices(records: readonly ServiceIPVS[]): VirtualService[] {
  return sortServices(
    records.flatMap((r) => r.services.map((s) => ({ ...s, reals: [...s.reals] }))),
  );
}

/** `kpx plan --proxy-mode ipvs`'s IPVS part, for people and for `ipvsadm -R`. */
export function renderIPVSPlan(plan: IPVSPlan): string {
  const services = allServices(plan.records);
  const addresses = plan.addresses.length > 0
    ? plan.addresses
    : [...new Set(plan.records.flatMap((r) => r.binds))].sort();
  return `# IPVS virtual services (${services.length}; ipvsadm -R format)\n${
    formatRestore(services)
  }` +
    `# kube-ipvs0 addresses (${addresses.length})\n${
      addresses.map((a) => `${a}/${a.includes(":") ? 128 : 32}\n`).join("")
    }`;
}
