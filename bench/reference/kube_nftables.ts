/**
 * kube-proxy's nftables mode, as a measuring stick (never part of kpx).
 *
 * Follows pkg/proxy/nftables/proxier.go of kubernetes/kubernetes at commit
 * b0f823e6ccd8a10b3893fc75011b9981af39285c: the v1.31/v1.32 layout (it has the
 * partial sync of kubernetes#126013, merged for v1.31, with its per-element
 * bookkeeping, the cluster-ips-check and filter-output-post-dnat chains, and
 * not yet the restart optimisation of kubernetes#130119, v1.33). The rule
 * shapes are unchanged in v1.33, where the mode went GA.
 *
 * What is generated is the text kube-proxy pipes to `nft -f -` through
 * knftables: one `add`/`flush`/`delete` command per line, in the order
 * syncProxyRules() issues them, for one IPv4 table `ip kube-proxy`:
 *   - dispatch: `services` looks up `ip daddr . meta l4proto . th dport` in the
 *     `service-ips` verdict map and, for local destinations, `l4proto . dport`
 *     in `service-nodeports`;
 *   - per service port a `service-<hash>-ns/name/proto/port` chain (masquerade
 *     off-cluster sources, then `numgen random mod N vmap { i : goto endpoint-… }`)
 *     and, with a node port, an `external-…` chain (mark, goto service chain);
 *   - per endpoint an `endpoint-<hash>-…__ip/port` chain (hairpin mark, dnat);
 *   - masquerading through `mark-for-masquerade` and the `masquerading` chain.
 * Scope: what bench/synthetic.ts generates (ClusterIP and NodePort services,
 * Cluster traffic policies, no session affinity, no external/LB IPs, IPv4),
 * with nodePortAddresses unset (all local addresses) and detect-local by
 * cluster CIDR.
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

const TABLE = "ip kube-proxy";

/** Base chains: name, type, hook, priority (dstnat = -100, srcnat = 100). */
const BASE_CHAINS: ReadonlyArray<readonly [string, string, string, number]> = [
  ["filter-prerouting", "filter", "prerouting", -110],
  ["filter-input", "filter", "input", -110],
  ["filter-forward", "filter", "forward", -110],
  ["filter-output", "filter", "output", -110],
  ["filter-output-post-dnat", "filter", "output", -90],
  ["nat-prerouting", "nat", "prerouting", -100],
  ["nat-output", "nat", "output", -100],
  ["nat-postrouting", "nat", "postrouting", 100],
];

/** Regular chains jumped to from base chains: [to, from, match]. */
const JUMP_CHAINS: ReadonlyArray<readonly [string, string, string]> = [
  ["nodeport-endpoints-check", "filter-input", "ct state new "],
  ["service-endpoints-check", "filter-input", "ct state new "],
  ["service-endpoints-check", "filter-forward", "ct state new "],
  ["service-endpoints-check", "filter-output", "ct state new "],
  ["firewall-check", "filter-prerouting", "ct state new "],
  ["firewall-check", "filter-output", "ct state new "],
  ["services", "nat-output", ""],
  ["services", "nat-prerouting", ""],
  ["masquerading", "nat-postrouting", ""],
  ["cluster-ips-check", "filter-forward", "ct state new "],
  ["cluster-ips-check", "filter-output-post-dnat", "ct state new "],
];

/** kube-proxy's "%#08x" of the masquerade bit, e.g. 0x004000. */
function masqueradeMark(bit: number): string {
  return `0x${(1 << bit).toString(16).padStart(6, "0")}`;
}

/** hashAndTruncate(): names here are far below nft's 256-byte limit, so no truncation. */
function chainBase(name: string): string {
  return `${hashPrefix(name, 8)}-${name}`;
}

function serviceBase(svc: Service, port: ServicePort): string {
  return `${svc.namespace}/${svc.name}/${protocolName(port)}/${port.name}`;
}

function serviceChain(svc: Service, port: ServicePort): string {
  return `service-${chainBase(serviceBase(svc, port))}`;
}

function externalChain(svc: Service, port: ServicePort): string {
  return `external-${chainBase(serviceBase(svc, port))}`;
}

function endpointChains(svc: Service, port: ServicePort): string[] {
  // "__ip/port", an IPv6 address with its colons as dots (chain names cannot hold ":").
  return readyEndpoints(port).map((ep) =>
    `endpoint-${
      chainBase(`${serviceBase(svc, port)}__${ep.address.replaceAll(":", ".")}/${ep.port}`)
    }`
  );
}

/** A knftables transaction being written: one command per line. */
class Tx {
  readonly lines: string[] = [];
  #ensured = new Set<string>();
  add(what: string): void {
    this.lines.push(`add ${what}`);
  }
  /** ensureChain(): add + flush, once per chain per transaction. */
  ensureChain(name: string): void {
    if (this.#ensured.has(name)) return;
    this.#ensured.add(name);
    this.lines.push(`add chain ${TABLE} ${name}`, `flush chain ${TABLE} ${name}`);
  }
  rule(chain: string, rule: string): void {
    this.lines.push(`add rule ${TABLE} ${chain} ${rule}`);
  }
  element(map: string, element: string): void {
    this.lines.push(`add element ${TABLE} ${map} { ${element} }`);
  }
  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

/** setupNFTables() on the first sync after start (the add+delete of base chains included). */
function writeSetup(tx: Tx, opts: ReferenceOptions): void {
  const mark = masqueradeMark(opts.masqueradeBit);
  tx.add(`table ${TABLE} { comment "rules for kube-proxy" ; }`);
  for (const [name] of BASE_CHAINS) {
    tx.add(`chain ${TABLE} ${name}`);
    tx.lines.push(`delete chain ${TABLE} ${name}`);
  }
  for (const [name, type, hook, prio] of BASE_CHAINS) {
    tx.add(`chain ${TABLE} ${name} { type ${type} hook ${hook} priority ${prio} ; }`);
    tx.lines.push(`flush chain ${TABLE} ${name}`);
  }
  for (const [to, from, match] of JUMP_CHAINS) {
    tx.ensureChain(to);
    tx.rule(from, `${match}jump ${to}`);
  }
  for (const c of ["services", "cluster-ips-check", "masquerading", "mark-for-masquerade"]) {
    tx.ensureChain(c);
  }
  tx.rule("mark-for-masquerade", `mark set mark or ${mark}`);
  tx.rule("masquerading", `mark and ${mark} == 0 return`);
  tx.rule("masquerading", `mark set mark xor ${mark}`);
  tx.rule("masquerading", "masquerade fully-random");
  tx.add(`set ${TABLE} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`);
  tx.rule(
    "cluster-ips-check",
    `ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`,
  );
  if (opts.serviceCIDRs.length > 0) {
    tx.rule(
      "cluster-ips-check",
      `ip daddr { ${
        opts.serviceCIDRs.join(", ")
      } } drop comment "Drop traffic to unallocated ClusterIPs"`,
    );
  }
  // nodePortAddresses unset: the set is created and deleted (knftables' "ensure absent").
  tx.add(
    `set ${TABLE} nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }`,
  );
  tx.lines.push(`delete set ${TABLE} nodeport-ips`);
  tx.add(
    `map ${TABLE} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
  );
  tx.add(
    `map ${TABLE} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`,
  );
  tx.add(
    `chain ${TABLE} reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`,
  );
  tx.lines.push(`flush chain ${TABLE} reject-chain`);
  tx.rule("reject-chain", "reject");
  tx.rule(
    "service-endpoints-check",
    "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
  );
  tx.rule(
    "nodeport-endpoints-check",
    "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
  );
  tx.add(
    `map ${TABLE} firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`,
  );
  tx.ensureChain("firewall-check");
  tx.rule("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips");
  tx.add(
    `map ${TABLE} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
  );
  tx.add(
    `map ${TABLE} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`,
  );
  tx.rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips");
  tx.rule(
    "services",
    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
  );
  // nftElementStorage.reset(): the element containers are flushed on a full sync.
  tx.lines.push(`flush set ${TABLE} cluster-ips`);
  for (
    const m of [
      "service-ips",
      "firewall-ips",
      "no-endpoint-services",
      "no-endpoint-nodeports",
      "service-nodeports",
    ]
  ) {
    tx.lines.push(`flush map ${TABLE} ${m}`);
  }
}

/** The map/set elements of one service port (ensureElem). */
function writeElements(tx: Tx, svc: Service, port: ServicePort): void {
  const proto = protocolName(port);
  const ip = svc.clusterIPs[0]!;
  tx.element("cluster-ips", ip);
  if (readyEndpoints(port).length === 0) {
    tx.element(
      "no-endpoint-services",
      `${ip} . ${proto} . ${port.port} comment "${servicePortName(svc, port)}" : goto reject-chain`,
    );
    return;
  }
  tx.element("service-ips", `${ip} . ${proto} . ${port.port} : goto ${serviceChain(svc, port)}`);
  if (port.nodePort) {
    tx.element(
      "service-nodeports",
      `${proto} . ${port.nodePort} : goto ${externalChain(svc, port)}`,
    );
  }
}

/** ensureChain() of one service port's chains: endpoints, then service, then external. */
function ensureChains(tx: Tx, svc: Service, port: ServicePort): void {
  if (readyEndpoints(port).length === 0) return;
  for (const c of endpointChains(svc, port)) tx.ensureChain(c);
  tx.ensureChain(serviceChain(svc, port));
  if (port.nodePort) tx.ensureChain(externalChain(svc, port));
}

/** The rules of one service port's chains (what a partial sync rewrites). */
function writeRules(tx: Tx, svc: Service, port: ServicePort, opts: ReferenceOptions): void {
  const eps = readyEndpoints(port);
  if (eps.length === 0) return;
  const proto = protocolName(port);
  const epChains = endpointChains(svc, port);
  const svcChain = serviceChain(svc, port);
  tx.rule(
    svcChain,
    `ip daddr ${
      svc.clusterIPs[0]
    } ${proto} dport ${port.port} ip saddr != ${opts.clusterCIDR} jump mark-for-masquerade`,
  );
  if (port.nodePort) {
    tx.rule(externalChain(svc, port), "jump mark-for-masquerade");
    tx.rule(externalChain(svc, port), `goto ${svcChain}`);
  }
  const vmap = epChains.map((c, i) => `${i} : goto ${c}`).join(" , ");
  tx.rule(svcChain, `numgen random mod ${eps.length} vmap { ${vmap} }`);
  eps.forEach((ep, i) => {
    tx.rule(epChains[i]!, `ip saddr ${ep.address} jump mark-for-masquerade`);
    tx.rule(epChains[i]!, `meta l4proto ${proto} dnat to ${endpointString(ep)}`);
  });
}

/** The transaction of kube-proxy's first (full) sync of these services. */
export function kubeNftablesFull(services: readonly Service[], opts: ReferenceOptions): string {
  const tx = new Tx();
  writeSetup(tx, opts);
  for (const svc of services) {
    for (const port of svc.ports) {
      ensureChains(tx, svc, port);
      writeElements(tx, svc, port);
      writeRules(tx, svc, port, opts);
    }
  }
  return tx.text();
}

/** What one service change costs kube-proxy's nftables mode. */
export interface KubeNftablesChange {
  /** The partial sync's transaction: the service's chains rewritten, stale ones flushed. */
  apply: string;
  /** The later transaction deleting the flushed chains (kube-proxy waits >= 1 s). */
  cleanup: string;
}

/**
 * The partial sync after `old` became `now` (same service, other endpoints).
 * Unchanged map elements are skipped (nftElementStorage); the service's chains
 * are re-created and flushed and all their rules written again; endpoint
 * chains no longer used are flushed now and deleted by a later sync.
 */
export function kubeNftablesChange(
  old: Service,
  now: Service,
  opts: ReferenceOptions,
): KubeNftablesChange {
  const tx = new Tx();
  for (const port of now.ports) {
    ensureChains(tx, now, port);
    writeRules(tx, now, port, opts);
  }
  const active = new Set(now.ports.flatMap((p) => endpointChains(now, p)));
  const stale = old.ports.flatMap((p) => endpointChains(old, p)).filter((c) => !active.has(c));
  for (const c of stale) tx.lines.push(`flush chain ${TABLE} ${c}`);
  return {
    apply: tx.text(),
    cleanup: stale.map((c) => `delete chain ${TABLE} ${c}\n`).join(""),
  };
}

/**
 * The listings kube-proxy runs on every sync, full or partial, to find stale
 * chains and affinity sets (knftables List(): `nft --json list <type>s ip`).
 */
export const KUBE_NFTABLES_SYNC_LISTINGS: readonly (readonly string[])[] = [
  ["nft", "--json", "list", "chains", "ip"],
  ["nft", "--json", "list", "sets", "ip"],
];
