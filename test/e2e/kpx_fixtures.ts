/**
 * kpx on a testbed, for the real-packet feature tests (features_*_test.ts): Kubernetes objects
 * that point at the testbed's pods, kpx's plan for every node loaded into that node's
 * namespace, and the assertions the tests share.
 *
 * ```ts
 * await using tb = await Testbed.create({ nodes: 2 });
 * const kpx = await KpxCluster.start(tb);
 * await kpx.sync(serviceObjects(tb, { name: "web", clusterIPs: ["10.96.0.10"], ports: [web] }, tb.pods));
 * expectReply(await tb.request(pod, { ip: "10.96.0.10", port: 80, protocol: "tcp" }), { ... }, "…");
 * ```
 *
 * Each node plans as the daemon does: a ClusterState fed with the objects (parseService,
 * parseEndpointSlice, parseNode), a PlanSession (the first plan full, later ones deltas of the
 * changed services), the context from the configuration and the node's Node object
 * (planContext). The batch goes through `nft -j -f` in the node's namespace; with
 * `clearConntrack` the stale UDP conntrack entries are deleted afterwards, as the daemon does.
 * @module
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { clearFlows, ProcessRunner, staleFlows } from "../../src/apply/mod.ts";
import { type Config, defaultConfig, planContext } from "../../src/config/mod.ts";
import { type PendingPlan, type PlanContext, Planner, PlanSession } from "../../src/planner/mod.ts";
import {
  ClusterState,
  parseCIDR,
  parseEndpointSlice,
  parseNode,
  parseService,
} from "../../src/state/mod.ts";
import type {
  NodeHandle,
  PodHandle,
  ProbeFailure,
  ProbeRequest,
  ProbeResult,
  ProbeSuccess,
  Testbed,
} from "./mod.ts";

/** A Kubernetes object as its JSON. */
export type KubeObject = Record<string, unknown>;

export type ServiceProtocol = "TCP" | "UDP" | "SCTP";

/** Where the tests put their services. */
export const SERVICE_CIDR_V4 = "10.96.0.0/16";
export const SERVICE_CIDR_V6 = "fd00:10:96::/112";

// ---- objects -------------------------------------------------------------------------------

export interface PortDef {
  /** Default: the protocol in lower case and the port, e.g. "tcp-80". */
  name?: string;
  protocol?: ServiceProtocol;
  port: number;
  /** The endpoints' port (the EndpointSlice's resolved targetPort). */
  targetPort: number;
  nodePort?: number;
}

export interface ServiceDef {
  name: string;
  type?: "ClusterIP" | "NodePort" | "LoadBalancer";
  /** One per family; the first is spec.clusterIP. */
  clusterIPs: readonly string[];
  ports: readonly PortDef[];
  externalIPs?: readonly string[];
  /** status.loadBalancer.ingress; ipMode "Proxy" ingresses are not captured by the node. */
  ingress?: readonly { ip: string; ipMode?: "VIP" | "Proxy" }[];
  loadBalancerSourceRanges?: readonly string[];
  externalTrafficPolicy?: "Cluster" | "Local";
  internalTrafficPolicy?: "Cluster" | "Local";
  /** sessionAffinity ClientIP with this timeout. */
  affinitySeconds?: number;
}

/** An endpoint's conditions; unset ones are those of a ready pod. */
export interface EndpointDef {
  pod: PodHandle;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

/** An endpoint of an EndpointSlice, resolved to one address. */
export interface SliceEndpoint {
  address: string;
  nodeName: string;
  /** targetRef name. */
  podName: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export function portName(p: PortDef): string {
  return p.name ?? `${(p.protocol ?? "TCP").toLowerCase()}-${p.port}`;
}

export function isIPv6(address: string): boolean {
  return address.includes(":");
}

/** The Node object kubelet would write for a testbed node. */
export function nodeObject(node: NodeHandle): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: node.name },
    spec: { podCIDRs: [node.podCidrV4, node.podCidrV6] },
    status: {
      addresses: [
        { type: "InternalIP", address: node.ipv4 },
        { type: "InternalIP", address: node.ipv6 },
      ],
    },
  };
}

export function serviceObject(def: ServiceDef): KubeObject {
  const spec: Record<string, unknown> = {
    type: def.type ?? "ClusterIP",
    clusterIP: def.clusterIPs[0],
    clusterIPs: [...def.clusterIPs],
    ipFamilies: def.clusterIPs.map((ip) => isIPv6(ip) ? "IPv6" : "IPv4"),
    ports: def.ports.map((p) => ({
      name: portName(p),
      protocol: p.protocol ?? "TCP",
      port: p.port,
      targetPort: p.targetPort,
      ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }),
    })),
  };
  if (def.externalIPs) spec["externalIPs"] = [...def.externalIPs];
  if (def.loadBalancerSourceRanges) {
    spec["loadBalancerSourceRanges"] = [...def.loadBalancerSourceRanges];
  }
  if (def.externalTrafficPolicy) spec["externalTrafficPolicy"] = def.externalTrafficPolicy;
  if (def.internalTrafficPolicy) spec["internalTrafficPolicy"] = def.internalTrafficPolicy;
  if (def.affinitySeconds !== undefined) {
    spec["sessionAffinity"] = "ClientIP";
    spec["sessionAffinityConfig"] = { clientIP: { timeoutSeconds: def.affinitySeconds } };
  }
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: def.name, namespace: "default" },
    spec,
    status: { loadBalancer: { ingress: (def.ingress ?? []).map((i) => ({ ...i })) } },
  };
}

export function endpointSliceObject(o: {
  service: string;
  name: string;
  family: 4 | 6;
  ports: readonly { name: string; protocol: ServiceProtocol; port: number }[];
  endpoints: readonly SliceEndpoint[];
}): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: o.name,
      namespace: "default",
      labels: { "kubernetes.io/service-name": o.service },
    },
    addressType: o.family === 4 ? "IPv4" : "IPv6",
    ports: o.ports.map((p) => ({ ...p })),
    endpoints: o.endpoints.map((e) => ({
      addresses: [e.address],
      nodeName: e.nodeName,
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
      targetRef: { kind: "Pod", namespace: "default", name: e.podName },
    })),
  };
}

/** A pod that is terminating but still serving (kube-proxy's fallback endpoints). */
export function terminating(pod: PodHandle, serving = true): EndpointDef {
  return { pod, ready: false, serving, terminating: true };
}

/**
 * The Service and its EndpointSlices (one per family of its ClusterIPs) with the given pods as
 * endpoints on every port's targetPort, each with nodeName = the pod's node.
 */
export function serviceObjects(
  tb: Testbed,
  def: ServiceDef,
  endpoints: readonly (PodHandle | EndpointDef)[],
): KubeObject[] {
  const eps = endpoints.map((e): EndpointDef => "pod" in e ? e : { pod: e });
  const families = [...new Set(def.clusterIPs.map((ip) => isIPv6(ip) ? 6 : 4))] as (4 | 6)[];
  const slices = families.map((family) =>
    endpointSliceObject({
      service: def.name,
      name: `${def.name}-v${family}`,
      family,
      ports: def.ports.map((p) => ({
        name: portName(p),
        protocol: p.protocol ?? "TCP",
        port: p.targetPort,
      })),
      endpoints: eps.map((e) => {
        const ready = e.ready ?? true;
        return {
          address: family === 4 ? e.pod.ipv4 : e.pod.ipv6,
          nodeName: tb.node(e.pod.node).name,
          podName: e.pod.name,
          ready,
          serving: e.serving ?? ready,
          terminating: e.terminating ?? false,
        };
      }),
    })
  );
  return [serviceObject(def), ...slices];
}

/** A networking.k8s.io/v1 ServiceCIDR. */
export function serviceCIDRObject(name: string, cidrs: readonly string[]): KubeObject {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "ServiceCIDR",
    metadata: { name },
    spec: { cidrs: [...cidrs] },
  };
}

// ---- planning --------------------------------------------------------------------------------

function objectKey(o: KubeObject): string {
  const meta = (o["metadata"] ?? {}) as Record<string, unknown>;
  return `${String(o["kind"])}/${String(meta["namespace"] ?? "")}/${String(meta["name"])}`;
}

function objectId(o: KubeObject): string {
  const meta = (o["metadata"] ?? {}) as Record<string, unknown>;
  return `${String(meta["namespace"] ?? "default")}/${String(meta["name"])}`;
}

/** Puts one Service or EndpointSlice into a node's state; anything kpx would ignore is a test bug. */
function upsert(state: ClusterState, o: KubeObject): void {
  if (o["kind"] === "Service") {
    const r = parseService(o);
    if (r.kind !== "service") throw new TypeError(`Cannot use ${objectKey(o)}: ${r.reason}`);
    state.upsertService(r.spec);
  } else if (o["kind"] === "EndpointSlice") {
    const r = parseEndpointSlice(o);
    if (r.kind !== "slice") throw new TypeError(`Cannot use ${objectKey(o)}: ${r.reason}`);
    state.upsertSlice(r.spec);
  } else if (o["kind"] !== "ServiceCIDR") {
    throw new TypeError(`Cannot use ${objectKey(o)}: not a Service, EndpointSlice or ServiceCIDR`);
  }
}

function remove(state: ClusterState, o: KubeObject): void {
  if (o["kind"] === "Service") state.deleteService(objectId(o));
  else if (o["kind"] === "EndpointSlice") state.deleteSlice(objectId(o));
}

/** The CIDRs of ServiceCIDR objects, as planning.ts adds them to the configuration. */
function serviceCIDRsOf(objects: Iterable<KubeObject>): string[] {
  const out: string[] = [];
  for (const o of objects) {
    if (o["kind"] !== "ServiceCIDR") continue;
    const spec = (o["spec"] ?? {}) as { cidrs?: unknown[] };
    for (const c of spec.cidrs ?? []) {
      const parsed = parseCIDR(String(c));
      if (!parsed) throw new TypeError(`Cannot use ServiceCIDR ${objectKey(o)}: ${c} is no CIDR`);
      out.push(parsed.text);
    }
  }
  return out;
}

/** What one node's sync did. */
export interface NodeSync {
  node: string;
  /** A full plan, or a delta of `services` changed services. */
  full: boolean;
  services: number;
  /** The batch loaded, as text. */
  batch: string;
  /** Stale UDP conntrack entries deleted after the load (0 without `clearConntrack`). */
  conntrackDeleted: number;
}

interface KpxNode {
  handle: NodeHandle;
  state: ClusterState;
  session: PlanSession;
}

/**
 * kpx on every node of a testbed. The configuration starts from kpx's defaults with
 * clusterCIDR = every node's pod CIDRs (so detect-local knows the pods) and the tests' service
 * CIDRs; sync() sets the cluster's Services, EndpointSlices and ServiceCIDRs and loads each
 * node's plan.
 */
export class KpxCluster {
  readonly #tb: Testbed;
  readonly #nodes: KpxNode[];
  #config: Config;
  /** Objects as last synced, by kind/namespace/name, as JSON. */
  #objects = new Map<string, { object: KubeObject; json: string }>();

  private constructor(tb: Testbed, planner: Planner, config: Config) {
    this.#tb = tb;
    this.#config = config;
    this.#nodes = tb.nodes.map((handle) => {
      const state = new ClusterState(handle.name);
      state.setNode(parseNode(nodeObject(handle)));
      return { handle, state, session: new PlanSession(planner) };
    });
  }

  /** kpx's configuration for `tb`, with `changes` on top. */
  static configFor(tb: Testbed, changes: Partial<Config> = {}): Config {
    return {
      ...defaultConfig(),
      clusterCIDRs: tb.nodes.flatMap((n) => [n.podCidrV4, n.podCidrV6]),
      serviceCIDRs: [SERVICE_CIDR_V4, SERVICE_CIDR_V6],
      ...changes,
    };
  }

  /** Plans an empty cluster on every node: kpx's table is in place before the first test. */
  static async start(tb: Testbed, changes: Partial<Config> = {}): Promise<KpxCluster> {
    const kpx = new KpxCluster(tb, await Planner.load(), KpxCluster.configFor(tb, changes));
    await kpx.sync([]);
    return kpx;
  }

  /** Changes the configuration (on top of configFor's); the next sync is a full plan. */
  configure(changes: Partial<Config>): void {
    this.#config = KpxCluster.configFor(this.#tb, changes);
  }

  /** The plan context node `index` plans with now. */
  context(index: number): PlanContext {
    const n = this.#nodes[index];
    if (!n) throw new RangeError(`Cannot find kpx node ${index}`);
    const config = {
      ...this.#config,
      serviceCIDRs: [
        ...this.#config.serviceCIDRs,
        ...serviceCIDRsOf([...this.#objects.values()].map((o) => o.object)),
      ],
    };
    const { notes: _notes, ...ctx } = planContext(config, n.handle.name, n.state.node);
    return ctx;
  }

  /**
   * Makes `objects` the cluster's Services, EndpointSlices and ServiceCIDRs (objects synced
   * before and absent now are deleted), then plans and loads every node (or those listed),
   * one after the other. A planner warning fails the sync: tests use valid objects.
   * `clearConntrack`: after each node's load, delete its stale UDP conntrack entries as the
   * daemon's applier does (off by default: most tests use fresh flows and skip the cost).
   */
  async sync(
    objects: readonly KubeObject[],
    options: { full?: boolean; clearConntrack?: boolean } = {},
  ): Promise<NodeSync[]> {
    const next = new Map<string, { object: KubeObject; json: string }>();
    for (const object of objects) {
      const key = objectKey(object);
      if (next.has(key)) throw new TypeError(`Cannot sync: ${key} is given twice`);
      next.set(key, { object, json: JSON.stringify(object) });
    }
    for (const [key, old] of this.#objects) {
      if (!next.has(key)) { for (const n of this.#nodes) remove(n.state, old.object); }
    }
    for (const [key, now] of next) {
      if (this.#objects.get(key)?.json === now.json) continue;
      for (const n of this.#nodes) upsert(n.state, now.object);
    }
    this.#objects = next;
    const out: NodeSync[] = [];
    for (const [i, n] of this.#nodes.entries()) {
      const plan = n.session.plan(n.state, this.context(i), { full: options.full ?? false });
      out.push(await this.#load(n, plan, options.clearConntrack ?? false));
    }
    return out;
  }

  async #load(n: KpxNode, plan: PendingPlan, clearConntrack: boolean): Promise<NodeSync> {
    const warnings = plan.output.warnings;
    if (warnings.length > 0) {
      n.session.invalidate();
      throw new Error(`Cannot plan ${n.handle.name}: planner warnings: ${warnings.join("; ")}`);
    }
    const batch = new TextDecoder().decode(plan.output.batch);
    try {
      await this.#tb.nft(n.handle, batch);
    } catch (error) {
      n.session.invalidate();
      throw error;
    }
    plan.commit();
    let conntrackDeleted = 0;
    if (clearConntrack) {
      const runner = new ProcessRunner(["ip", "netns", "exec", n.handle.ns]);
      const cleared = await clearFlows(runner, plan.changes().flatMap(staleFlows));
      deepEqual(cleared.errors, [], `${n.handle.name}: conntrack cleanup`);
      conntrackDeleted = cleared.deleted;
    }
    return {
      node: n.handle.name,
      full: plan.full,
      services: plan.services,
      batch,
      conntrackDeleted,
    };
  }
}

/**
 * A one-shot full plan for a node that is not a testbed's (the SCTP test's VM): the node's
 * Node object plus the cluster's objects, planned as `kpx plan` does.
 */
export async function planNode(
  nodeName: string,
  node: KubeObject,
  objects: readonly KubeObject[],
  config: Config,
): Promise<string> {
  const state = new ClusterState(nodeName);
  const spec = parseNode(node);
  state.setNode(spec);
  for (const o of objects) upsert(state, o);
  const { notes: _notes, ...ctx } = planContext(
    { ...config, serviceCIDRs: [...config.serviceCIDRs, ...serviceCIDRsOf(objects)] },
    nodeName,
    spec,
  );
  const plan = new PlanSession(await Planner.load()).plan(state, ctx);
  deepEqual(plan.output.warnings, [], "planner warnings");
  return new TextDecoder().decode(plan.output.batch);
}

// ---- probes and assertions -------------------------------------------------------------------

export type Protocol = ProbeRequest["protocol"];

/** TCP and UDP requests to each address. */
export function bothProtocols(
  ips: readonly string[],
  port: number,
  extra: Partial<ProbeRequest> = {},
): ProbeRequest[] {
  return ips.flatMap((ip) =>
    (["tcp", "udp"] as const).map((protocol) => ({ ip, port, protocol, ...extra }))
  );
}

export function describeRequest(r: ProbeRequest): string {
  const ip = isIPv6(r.ip) ? `[${r.ip}]` : r.ip;
  return `${r.protocol} ${r.sourceIp ? `from ${r.sourceIp} ` : ""}to ${ip}:${r.port}`;
}

/**
 * Asserts an echo reply, from `pod` (one name, or any of several) that saw the client as
 * `peer`. Returns it.
 */
export function expectReply(
  result: ProbeResult | undefined,
  want: { pod?: string | readonly string[]; peer?: string },
  what: string,
): ProbeSuccess {
  ok(result !== undefined, `${what}: no result`);
  ok(result.ok, `${what}: expected a reply, got ${JSON.stringify(result)}`);
  if (typeof want.pod === "string") {
    equal(result.pod, want.pod, `${what}: answered by ${result.pod}`);
  } else if (want.pod !== undefined) {
    ok(want.pod.includes(result.pod), `${what}: answered by ${result.pod}, not one of ${want.pod}`);
  }
  if (want.peer !== undefined) {
    equal(result.peer, want.peer, `${what}: ${result.pod} saw the client as ${result.peer}`);
  }
  return result;
}

/** Asserts a failure of the given kind: "refused" for a reject, "timeout" for a drop. */
export function expectFailure(
  result: ProbeResult | undefined,
  failure: ProbeFailure,
  what: string,
): void {
  ok(result !== undefined, `${what}: no result`);
  ok(!result.ok, `${what}: expected ${failure}, got a reply ${JSON.stringify(result)}`);
  equal(result.failure, failure, `${what}: expected ${failure}, got ${JSON.stringify(result)}`);
}

/** Sends `requests` from `from` and asserts each one's reply with `want(request)`. */
export async function expectReplies(
  tb: Testbed,
  from: PodHandle | NodeHandle | Testbed["client"],
  requests: readonly ProbeRequest[],
  want: (r: ProbeRequest) => { pod?: string | readonly string[]; peer?: string },
  what: string,
): Promise<ProbeSuccess[]> {
  const results = await tb.requestMany(from, requests);
  return results.map((result, i) => {
    const request = requests[i]!;
    return expectReply(result, want(request), `${what}: ${from.name} ${describeRequest(request)}`);
  });
}

/**
 * Sends `requests` from `from` and asserts that each fails with `failure`.
 *
 * A node's own UDP datagram that kpx rejects or drops never leaves: the output hook discards
 * it and sendmsg fails with EPERM ("other") before any ICMP error could arrive; that is what
 * "refused" and "timeout" mean for UDP sent by a node.
 */
export async function expectFailures(
  tb: Testbed,
  from: PodHandle | NodeHandle | Testbed["client"],
  requests: readonly ProbeRequest[],
  failure: ProbeFailure,
  what: string,
): Promise<void> {
  const results = await tb.requestMany(from, requests);
  results.forEach((result, i) => {
    const request = requests[i]!;
    const where = `${what}: ${from.name} ${describeRequest(request)}`;
    if (from.kind === "node" && request.protocol === "udp") {
      ok(
        result !== undefined && !result.ok,
        `${where}: expected EPERM, got ${JSON.stringify(result)}`,
      );
      equal(result.detail, "EPERM", `${where}: expected EPERM, got ${JSON.stringify(result)}`);
    } else {
      expectFailure(result, failure, where);
    }
  });
}

/** How many replies each pod sent. */
export function tally(results: readonly ProbeResult[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of results) if (r.ok) out.set(r.pod, (out.get(r.pod) ?? 0) + 1);
  return out;
}

/**
 * The acceptance interval [low, high] for X ~ Binomial(n, p): P(X < low) ≤ alpha/2 and
 * P(X > high) ≤ alpha/2, from the exact distribution.
 */
export function binomialInterval(n: number, p: number, alpha: number): [number, number] {
  const logPmf: number[] = [];
  let logC = 0; // log C(n, k), built up k by k
  for (let k = 0; k <= n; k++) {
    if (k > 0) logC += Math.log(n - k + 1) - Math.log(k);
    logPmf.push(logC + k * Math.log(p) + (n - k) * Math.log1p(-p));
  }
  const pmf = logPmf.map(Math.exp);
  let low = 0;
  for (let tail = 0; low <= n && tail + pmf[low]! <= alpha / 2; low++) tail += pmf[low]!;
  let high = n;
  for (let tail = 0; high >= 0 && tail + pmf[high]! <= alpha / 2; high--) tail += pmf[high]!;
  return [low, high];
}

/**
 * Source ports first, first + 1, …: one per UDP request. A UDP request from a port an earlier
 * one used joins that flow's conntrack entry (and its DNAT) instead of being balanced afresh.
 */
export class SourcePorts {
  #next: number;

  constructor(first = 20_000) {
    this.#next = first;
  }

  next(): number {
    // Below the kernel's ephemeral range (32768…), so no socket it binds can take them.
    if (this.#next > 32_767) throw new RangeError("Cannot pick a source port: all used up");
    return this.#next++;
  }
}

/** Runs `check` until it returns true or `timeoutMs` passes; false on timeout. */
export async function pollUntil(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number },
): Promise<boolean> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}

/** Adds addresses to an interface of a testbed namespace (ip addr add … [extra]). */
export async function addAddresses(
  tb: Testbed,
  place: Parameters<Testbed["exec"]>[0],
  device: string,
  addresses: readonly string[],
  extra: readonly string[] = [],
): Promise<void> {
  for (const address of addresses) {
    const r = await tb.exec(place, ["ip", "addr", "add", address, "dev", device, ...extra]);
    equal(r.code, 0, `ip addr add ${address} dev ${device}: ${r.stderr}`);
  }
}

/**
 * IPv6 addresses that the kernel never picks as a source on its own (deprecated: preferred
 * lifetime 0) but that a socket may still bind: extra addresses that leave source address
 * selection, and so every masquerade the tests expect, as it was.
 */
export const DEPRECATED_V6: readonly string[] = ["preferred_lft", "0", "nodad"];
