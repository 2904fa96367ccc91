/**
 * kube-proxy's iptables mode, as a measuring stick (never part of kpx): the
 * input it gives `iptables-restore --noflush --counters`, loadable with
 * iptables-nft-restore or iptables-legacy-restore.
 *
 * Follows pkg/proxy/iptables/proxier.go of kubernetes/kubernetes at commit
 * b0f823e6ccd8a10b3893fc75011b9981af39285c (the v1.31/v1.32 proxier; the rule
 * layout has not changed since partial syncs, "MinimizeIPTablesRestore",
 * became the default in v1.27/GA in v1.28):
 *   - nat KUBE-SERVICES: one rule per service IP and port, in sequence (this
 *     is the O(services) walk every new connection makes), ending with the
 *     `addrtype LOCAL -j KUBE-NODEPORTS` rule; KUBE-NODEPORTS: one rule per
 *     node port, to a KUBE-EXT-* chain that marks and jumps to KUBE-SVC-*;
 *   - KUBE-SVC-*: masquerade off-cluster sources (detect-local), then one
 *     rule per endpoint, `-m statistic --mode random --probability 1/(n-i)`;
 *   - KUBE-SEP-*: hairpin mark, DNAT;
 *   - KUBE-MARK-MASQ / KUBE-POSTROUTING: the masquerade mark;
 *   - filter: KUBE-FORWARD, KUBE-FIREWALL, and the (here empty) per-service
 *     reject chains.
 * With more than 1000 endpoints kube-proxy is in "large cluster mode" and
 * leaves the comments off the KUBE-SVC/KUBE-SEP rules; every size here is.
 * Scope as in kube_nftables.ts: ClusterIP and NodePort services, Cluster
 * policies, no affinity, IPv4, nodePortAddresses unset, detect-local by CIDR,
 * localhostNodePorts at its default (true).
 */
import type { Service, ServicePort } from "../../src/state/mod.ts";
import {
  endpointString,
  hashPrefix,
  protocolName,
  readyEndpoints,
  servicePortName,
} from "./_names.ts";
import type { ReferenceOptions } from "./options.ts";

const LARGE_CLUSTER_ENDPOINTS = 1000;

const FILTER_CHAINS = [
  "KUBE-SERVICES",
  "KUBE-EXTERNAL-SERVICES",
  "KUBE-FORWARD",
  "KUBE-NODEPORTS",
  "KUBE-PROXY-FIREWALL",
];
const NAT_CHAINS = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];

/**
 * The jump rules kube-proxy ensures (`iptables -I <chain>`, one process each)
 * before a full sync: [table, from, to, match, comment]. In this order each is
 * prepended, so the last ends up first.
 */
const JUMPS: ReadonlyArray<readonly [string, string, string, string, string]> = [
  [
    "filter",
    "INPUT",
    "KUBE-EXTERNAL-SERVICES",
    "-m conntrack --ctstate NEW",
    "kubernetes externally-visible service portals",
  ],
  [
    "filter",
    "FORWARD",
    "KUBE-EXTERNAL-SERVICES",
    "-m conntrack --ctstate NEW",
    "kubernetes externally-visible service portals",
  ],
  ["filter", "INPUT", "KUBE-NODEPORTS", "", "kubernetes health check service ports"],
  [
    "filter",
    "FORWARD",
    "KUBE-SERVICES",
    "-m conntrack --ctstate NEW",
    "kubernetes service portals",
  ],
  ["filter", "OUTPUT", "KUBE-SERVICES", "-m conntrack --ctstate NEW", "kubernetes service portals"],
  ["filter", "FORWARD", "KUBE-FORWARD", "", "kubernetes forwarding rules"],
  [
    "filter",
    "INPUT",
    "KUBE-PROXY-FIREWALL",
    "-m conntrack --ctstate NEW",
    "kubernetes load balancer firewall",
  ],
  [
    "filter",
    "OUTPUT",
    "KUBE-PROXY-FIREWALL",
    "-m conntrack --ctstate NEW",
    "kubernetes load balancer firewall",
  ],
  [
    "filter",
    "FORWARD",
    "KUBE-PROXY-FIREWALL",
    "-m conntrack --ctstate NEW",
    "kubernetes load balancer firewall",
  ],
  ["nat", "OUTPUT", "KUBE-SERVICES", "", "kubernetes service portals"],
  ["nat", "PREROUTING", "KUBE-SERVICES", "", "kubernetes service portals"],
  ["nat", "POSTROUTING", "KUBE-POSTROUTING", "", "kubernetes postrouting rules"],
  // kubelet's copies, which kube-proxy also ensures
  ["filter", "INPUT", "KUBE-FIREWALL", "", ""],
  ["filter", "OUTPUT", "KUBE-FIREWALL", "", ""],
];

function masqueradeMark(bit: number): string {
  return `0x${(1 << bit).toString(16).padStart(6, "0")}`;
}

function svcHash(svc: Service, port: ServicePort): string {
  return hashPrefix(servicePortName(svc, port) + protocolName(port), 16);
}

function sepChains(svc: Service, port: ServicePort): string[] {
  const name = servicePortName(svc, port) + protocolName(port);
  return readyEndpoints(port).map((ep) => `KUBE-SEP-${hashPrefix(name + endpointString(ep), 16)}`);
}

/** One service port's nat lines: the shared-chain rules, and its own chains and rules. */
interface NatService {
  /** Rules in KUBE-SERVICES / KUBE-NODEPORTS (written on every sync). */
  shared: string[];
  /** ":CHAIN - [0:0]" lines of its own chains (written when it changed). */
  chains: string[];
  /** Rules of its own chains. */
  rules: string[];
}

function natService(
  svc: Service,
  port: ServicePort,
  opts: ReferenceOptions,
  large: boolean,
): NatService {
  const out: NatService = { shared: [], chains: [], rules: [] };
  const eps = readyEndpoints(port);
  // Services without endpoints get REJECT rules in filter KUBE-SERVICES;
  // synthetic services always have endpoints.
  if (eps.length === 0) return out;
  const name = servicePortName(svc, port);
  const proto = protocolName(port);
  const ip = svc.clusterIPs[0]!;
  const hash = svcHash(svc, port);
  const svcChain = `KUBE-SVC-${hash}`;
  const extChain = `KUBE-EXT-${hash}`;
  const match = `-m ${proto} -p ${proto} -d ${ip} --dport ${port.port}`;
  out.shared.push(
    `-A KUBE-SERVICES -m comment --comment "${name} cluster IP" ${match} -j ${svcChain}`,
  );
  if (port.nodePort) {
    out.shared.push(
      `-A KUBE-NODEPORTS -m comment --comment ${name} -m ${proto} -p ${proto} --dport ${port.nodePort} -j ${extChain}`,
    );
    out.chains.push(`:${extChain} - [0:0]`);
    out.rules.push(
      `-A ${extChain} -m comment --comment "masquerade traffic for ${name} external destinations" -j KUBE-MARK-MASQ`,
      `-A ${extChain} -j ${svcChain}`,
    );
  }
  out.chains.push(`:${svcChain} - [0:0]`);
  out.rules.push(
    `-A ${svcChain} -m comment --comment "${name} cluster IP" ${match} ! -s ${opts.clusterCIDR} -j KUBE-MARK-MASQ`,
  );
  const seps = sepChains(svc, port);
  eps.forEach((ep, i) => {
    const comment = large ? "" : ` -m comment --comment "${name} -> ${endpointString(ep)}"`;
    // Rule i matches 1/(n-i) of what reaches it, so each endpoint gets 1/n.
    const statistic = i < eps.length - 1
      ? ` -m statistic --mode random --probability ${(1 / (eps.length - i)).toFixed(10)}`
      : "";
    out.rules.push(`-A ${svcChain}${comment}${statistic} -j ${seps[i]}`);
  });
  eps.forEach((ep, i) => {
    const sep = seps[i]!;
    const comment = large ? "" : ` -m comment --comment ${name}`;
    out.chains.push(`:${sep} - [0:0]`);
    out.rules.push(
      `-A ${sep}${comment} -s ${ep.address} -j KUBE-MARK-MASQ`,
      `-A ${sep}${comment} -m ${proto} -p ${proto} -j DNAT --to-destination ${endpointString(ep)}`,
    );
  });
  return out;
}

function filterTable(): string[] {
  return [
    "*filter",
    ...FILTER_CHAINS.map((c) => `:${c} - [0:0]`),
    ":KUBE-FIREWALL - [0:0]",
    `-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
  ];
}

function filterTail(mark: string): string[] {
  return [
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`,
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    "COMMIT",
  ];
}

function natHead(mark: string): string[] {
  return [
    `-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`,
    `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`,
  ];
}

const NODEPORTS_JUMP =
  `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`;

function jumpLines(table: string): string[] {
  return JUMPS.filter(([t]) => t === table).map(([, from, to, match, comment]) =>
    `-I ${from} 1${match ? ` ${match}` : ""}${
      comment ? ` -m comment --comment "${comment}"` : ""
    } -j ${to}`
  );
}

function isLarge(services: readonly Service[]): boolean {
  let n = 0;
  for (const s of services) for (const p of s.ports) n += readyEndpoints(p).length;
  return n > LARGE_CLUSTER_ENDPOINTS;
}

/**
 * kube-proxy's first (full) sync: every chain and rule. The jump rules it
 * installs with separate `iptables -I` runs are included here as `-I` lines
 * (cheaper than kube-proxy's ~14 processes: in kube-proxy's favour).
 */
export function kubeIptablesFull(services: readonly Service[], opts: ReferenceOptions): string {
  return restoreInput(services, null, opts, true);
}

/**
 * The partial sync after one service changed (kube-proxy's default since
 * v1.27): the filter table and the shared nat chains (KUBE-SERVICES with a
 * rule per service, KUBE-NODEPORTS, ...) are rewritten whole; of the
 * per-service chains only the changed service's. Stale KUBE-SEP chains are
 * not deleted: in large-cluster mode kube-proxy deletes them once per
 * syncPeriod, not per sync. `services` is the state after the change.
 */
export function kubeIptablesChange(
  services: readonly Service[],
  changed: Service,
  opts: ReferenceOptions,
): string {
  return restoreInput(services, changed.id, opts, false);
}

/**
 * NOT something kube-proxy does: the full ruleset split into several
 * `iptables-restore --noflush` inputs of `perChunk` services each, which leave
 * the kernel with the same rules as kubeIptablesFull(). One iptables-nft-restore
 * of a whole large table takes minutes (its cost grows faster than linearly
 * with the input), so the benchmark loads big tables this way when it only
 * needs the rules in place (data plane, one-service change), never to time a
 * full sync. Later chunks append to KUBE-SERVICES/KUBE-NODEPORTS without
 * re-declaring (which would flush) them; the last one adds the final
 * KUBE-NODEPORTS jump.
 */
export function kubeIptablesChunks(
  services: readonly Service[],
  opts: ReferenceOptions,
  perChunk: number,
): string[] {
  const mark = masqueradeMark(opts.masqueradeBit);
  const large = isLarge(services);
  const out: string[] = [];
  for (let start = 0; start < services.length || start === 0; start += perChunk) {
    const first = start === 0;
    const last = start + perChunk >= services.length;
    const lines = first
      ? [...filterTable(), ...jumpLines("filter"), ...filterTail(mark), "*nat"]
      : ["*nat"];
    const chains = first ? NAT_CHAINS.map((c) => `:${c} - [0:0]`) : [];
    const rules = first ? natHead(mark) : [];
    for (const svc of services.slice(start, start + perChunk)) {
      for (const port of svc.ports) {
        const n = natService(svc, port, opts, large);
        for (const c of n.chains) chains.push(c);
        for (const r of n.shared) rules.push(r);
        for (const r of n.rules) rules.push(r);
      }
    }
    if (last) rules.push(NODEPORTS_JUMP);
    if (first) rules.push(...jumpLines("nat"));
    out.push([...lines, ...chains, ...rules, "COMMIT"].join("\n") + "\n");
    if (last) break;
  }
  return out;
}

function restoreInput(
  services: readonly Service[],
  changed: string | null,
  opts: ReferenceOptions,
  full: boolean,
): string {
  const mark = masqueradeMark(opts.masqueradeBit);
  const large = isLarge(services);
  const lines = filterTable();
  if (full) lines.push(...jumpLines("filter"));
  lines.push(...filterTail(mark), "*nat", ...NAT_CHAINS.map((c) => `:${c} - [0:0]`));
  const chains: string[] = [];
  const rules = natHead(mark);
  for (const svc of services) {
    const written = full || svc.id === changed;
    for (const port of svc.ports) {
      const n = natService(svc, port, opts, large);
      for (const r of n.shared) rules.push(r);
      if (written) {
        for (const c of n.chains) chains.push(c);
        for (const r of n.rules) rules.push(r);
      }
    }
  }
  rules.push(NODEPORTS_JUMP);
  if (full) rules.push(...jumpLines("nat"));
  // Joined piecewise: spreading 100k+ lines into push() overflows the stack.
  return [lines.join("\n"), chains.join("\n"), rules.join("\n"), "COMMIT\n"]
    .filter((part) => part !== "").join("\n");
}
