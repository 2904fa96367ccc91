/**
 * A real-kernel testbed: network namespaces joined by veth, standing in for a small cluster.
 *
 * ```ts
 * await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
 * const [a, b] = tb.pods;
 * const reply = await tb.request(a!, { ip: b!.ipv4, port: 8080, protocol: "tcp" });
 * // reply: { ok: true, pod: "pod0b", peer: "10.244.0.2", … }
 * ```
 *
 * Topology and address plan: see _testbed_topology.ts and _testbed_addresses.ts. Nothing is
 * linked to the root namespace; close() (or an interrupt) deletes every namespace made.
 * @module
 */

import {
  CLIENT_V4,
  CLIENT_V6,
  GATEWAY_V4,
  GATEWAY_V6,
  letterSuffix,
  MAX_NODES,
  MAX_PODS_PER_NODE,
  nodeIPv4,
  nodeIPv6,
  podCidrV4,
  podCidrV6,
  podIPv4,
  podIPv6,
} from "./_testbed_addresses.ts";
import { type EmergencyCleanup, track, untrack } from "./_testbed_cleanup.ts";
import {
  type ConntrackEntry,
  type ConntrackResult,
  listConntrack,
  runConntrack,
} from "./_testbed_conntrack.ts";
import { EchoServer } from "./_testbed_echo.ts";
import {
  describe,
  execInNetns,
  type ExecOptions,
  type ExecResult,
  ipBatch,
  readSysctl,
  runChecked,
  setSysctls,
} from "./_testbed_exec.ts";
import { claimTestbedPrefix, killProcessesIn } from "./_testbed_names.ts";
import { listNftRuleset, loadNftBatch, loadNftText } from "./_testbed_nft.ts";
import { probeFromNetns, type ProbeManyOptions } from "./_testbed_probe.ts";
import type { ProbeRequest, ProbeResult } from "./_testbed_probe_types.ts";
import {
  clientLinks,
  COMMON_SYSCTLS,
  LAN_BRIDGE,
  lanLinks,
  NODE_SYSCTLS,
  nodeLinks,
  podHostLinks,
  podHostSysctls,
  podLinks,
} from "./_testbed_topology.ts";

// The free-standing tools, for namespaces that are not a Testbed's (e.g. `kpx trace`).
export { EchoServer, type EchoServerOptions } from "./_testbed_echo.ts";
export {
  CommandError,
  execInNetns,
  type ExecOptions,
  type ExecResult,
  readSysctl,
  runCommand,
  setSysctls,
} from "./_testbed_exec.ts";
export { type HelperCommands, helperCommands, setHelperCommands } from "./_testbed_helpers.ts";
export { type EchoOptions, parseEchoArgs, serveEcho } from "./echo_server.ts";
export { runProbes } from "./probe_client.ts";
export { listNetns, reapStaleTestbeds, TESTBED_NAMESPACE_PREFIX } from "./_testbed_names.ts";
export { listNftRuleset, loadNftBatch, loadNftText } from "./_testbed_nft.ts";
export {
  type ConntrackEntry,
  type ConntrackResult,
  type ConntrackTuple,
  listConntrack,
  parseConntrackOutput,
  runConntrack,
} from "./_testbed_conntrack.ts";
export { probeFromNetns, type ProbeManyOptions } from "./_testbed_probe.ts";
export type {
  ProbeError,
  ProbeFailure,
  ProbeRequest,
  ProbeResult,
  ProbeSuccess,
  Protocol,
} from "./_testbed_probe_types.ts";
export {
  type KernelPrereqs,
  requireKernelPrereqs,
  shouldSkipKernelTests,
} from "./_testbed_prereqs.ts";
export {
  CLIENT_V4,
  CLIENT_V6,
  GATEWAY_V4,
  GATEWAY_V6,
  POD_GATEWAY_V4,
  POD_GATEWAY_V6,
} from "./_testbed_addresses.ts";

const LAN_ROLE = "lan";

/** Ports every pod's echo server serves (TCP and UDP) unless told otherwise. */
export const DEFAULT_ECHO_PORTS: readonly number[] = [80, 8080];

export interface TestbedOptions {
  /** Node namespaces, 1…8. Default 1. */
  nodes?: number;
  /** Pods created on every node at start. Default 2. */
  podsPerNode?: number;
  /** TCP and UDP ports of each pod's echo server. Default [80, 8080]. */
  echoPorts?: readonly number[];
  /** Start an echo server in each pod. Default true. */
  startEcho?: boolean;
}

export interface PodOptions {
  /** One word, unique in the testbed; the echo reply's first field. Default pod<node><letter>. */
  name?: string;
  /** Echo ports (TCP and UDP). Default: the testbed's echoPorts. */
  echoPorts?: readonly number[];
  /** Default: the testbed's startEcho. */
  startEcho?: boolean;
}

export interface HostEchoOptions {
  /** One word: the echo reply's first field. */
  name: string;
  /** Default: the testbed's echoPorts. */
  ports?: readonly number[];
}

/** Any namespace of the testbed. */
export interface NetnsHandle {
  readonly kind: "lan" | "node" | "client" | "pod";
  /** Short name, e.g. "node0", "client", "pod0a". */
  readonly name: string;
  /** Network namespace name, for `ip netns exec`. */
  readonly ns: string;
}

export interface LanHandle extends NetnsHandle {
  readonly kind: "lan";
  readonly bridge: string;
  readonly gatewayV4: string;
  readonly gatewayV6: string;
}

export interface NodeHandle extends NetnsHandle {
  readonly kind: "node";
  readonly index: number;
  /** Node IPs, on eth0. */
  readonly ipv4: string;
  readonly ipv6: string;
  readonly podCidrV4: string;
  readonly podCidrV6: string;
}

export interface ClientHandle extends NetnsHandle {
  readonly kind: "client";
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface PodHandle extends NetnsHandle {
  readonly kind: "pod";
  /** Index of the node the pod runs on. */
  readonly node: number;
  readonly ipv4: string;
  readonly ipv6: string;
  /** The pod's veth as seen in the node namespace, e.g. "veth-0a". */
  readonly hostVeth: string;
  /** Its echo server, when started. */
  readonly echo: EchoServer | undefined;
}

/** Where to run something: a handle, a node index, or one of this testbed's namespace names. */
export type Place = NetnsHandle | number | string;

/** A set of namespaces, cleaned up by close() / `await using`. */
export class Testbed implements EmergencyCleanup, AsyncDisposable {
  /** `kpxt<pid>x<n>`: every namespace of this testbed starts with it. */
  readonly prefix: string;
  readonly lan: LanHandle;
  readonly client: ClientHandle;
  readonly nodes: readonly NodeHandle[];
  #pods: PodHandle[] = [];
  #podsMade: number[];
  /** Names of pods made or being made: reserved before any await so concurrent adds agree. */
  #podNames = new Set<string>();
  #hostServers: EchoServer[] = [];
  /** Every namespace created and not yet deleted, in creation order. */
  #namespaces = new Set<string>();
  #defaults: { echoPorts: readonly number[]; startEcho: boolean };
  #closed = false;

  private constructor(prefix: string, nodeCount: number, options: TestbedOptions) {
    this.prefix = prefix;
    this.lan = {
      kind: "lan",
      name: "lan",
      ns: `${prefix}-${LAN_ROLE}`,
      bridge: LAN_BRIDGE,
      gatewayV4: GATEWAY_V4,
      gatewayV6: GATEWAY_V6,
    };
    this.client = {
      kind: "client",
      name: "client",
      ns: `${prefix}-c`,
      ipv4: CLIENT_V4,
      ipv6: CLIENT_V6,
    };
    this.nodes = Array.from({ length: nodeCount }, (_, index) => ({
      kind: "node",
      name: `node${index}`,
      ns: `${prefix}-n${index}`,
      index,
      ipv4: nodeIPv4(index),
      ipv6: nodeIPv6(index),
      podCidrV4: podCidrV4(index),
      podCidrV6: podCidrV6(index),
    }));
    this.#podsMade = new Array<number>(nodeCount).fill(0);
    this.#defaults = {
      echoPorts: options.echoPorts ?? DEFAULT_ECHO_PORTS,
      startEcho: options.startEcho ?? true,
    };
  }

  /** Builds the lan, the client, the nodes and their pods (with echo servers). */
  static async create(options: TestbedOptions = {}): Promise<Testbed> {
    const nodeCount = options.nodes ?? 1;
    const podsPerNode = options.podsPerNode ?? 2;
    if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > MAX_NODES) {
      throw new RangeError(`Cannot create testbed: nodes must be 1…${MAX_NODES}, got ${nodeCount}`);
    }
    if (!Number.isInteger(podsPerNode) || podsPerNode < 0 || podsPerNode > MAX_PODS_PER_NODE) {
      throw new RangeError(`Cannot create testbed: podsPerNode must be 0…${MAX_PODS_PER_NODE}`);
    }
    const testbed = new Testbed(await claimTestbedPrefix(LAN_ROLE), nodeCount, options);
    testbed.#namespaces.add(testbed.lan.ns); // Created by the claim.
    track(testbed);
    try {
      await testbed.#build(podsPerNode);
    } catch (error) {
      let closeProblem = "";
      try {
        await testbed.close();
      } catch (closeError) {
        closeProblem = `; cleanup also failed: ${describe(closeError)}`;
      }
      const reason = `${describe(error)}${closeProblem}`;
      throw new Error(`Cannot create testbed ${testbed.prefix}: ${reason}`, { cause: error });
    }
    return testbed;
  }

  async #build(podsPerNode: number): Promise<void> {
    const nodeNamespaces = this.nodes.map((node) => node.ns);
    await settleAll([this.client.ns, ...nodeNamespaces].map((ns) => this.#addNetns(ns)));
    await settleAll([
      setSysctls(this.lan.ns, COMMON_SYSCTLS),
      setSysctls(this.client.ns, COMMON_SYSCTLS),
      ...nodeNamespaces.map((ns) => setSysctls(ns, { ...COMMON_SYSCTLS, ...NODE_SYSCTLS })),
    ]);
    await ipBatch(`wire lan ${this.lan.ns}`, this.lan.ns, lanLinks(nodeNamespaces, this.client.ns));
    await settleAll([
      ipBatch(`configure client ${this.client.ns}`, this.client.ns, clientLinks()),
      ...this.nodes.map((node) =>
        ipBatch(`configure node ${node.ns}`, node.ns, nodeLinks(node.index, this.nodes.length))
      ),
    ]);
    const pods: Promise<PodHandle>[] = [];
    for (const node of this.nodes) {
      for (let k = 0; k < podsPerNode; k++) pods.push(this.addPod(node.index));
    }
    await settleAll(pods);
  }

  async #addNetns(ns: string): Promise<void> {
    await runChecked(`create namespace ${ns}`, ["ip", "netns", "add", ns]);
    this.#namespaces.add(ns);
  }

  /** Current pods, by node then creation order. */
  get pods(): readonly PodHandle[] {
    return [...this.#pods].sort((a, b) => a.node - b.node || lastOctet(a.ipv4) - lastOctet(b.ipv4));
  }

  /** Every namespace this testbed has made and not yet deleted. */
  get namespaces(): readonly string[] {
    return [...this.#namespaces];
  }

  node(index: number): NodeHandle {
    const node = this.nodes[index];
    if (node === undefined) {
      throw new RangeError(
        `Cannot find node ${index} in testbed ${this.prefix}: it has ${this.nodes.length}`,
      );
    }
    return node;
  }

  pod(name: string): PodHandle {
    const pod = this.#pods.find((p) => p.name === name);
    if (pod === undefined) {
      throw new RangeError(`Cannot find pod ${name} in testbed ${this.prefix}`);
    }
    return pod;
  }

  podsOn(node: number): PodHandle[] {
    return this.pods.filter((pod) => pod.node === node);
  }

  /** Creates a pod on `node`: its namespace, veth, addresses, routes, and echo server. */
  async addPod(node: number, options: PodOptions = {}): Promise<PodHandle> {
    this.#assertOpen("add a pod");
    const host = this.node(node);
    const k = this.#podsMade[node] ?? 0;
    if (k >= MAX_PODS_PER_NODE) {
      throw new RangeError(`Cannot add a pod to ${host.name}: address plan is full`);
    }
    this.#podsMade[node] = k + 1;
    const suffix = `${node}${letterSuffix(k)}`;
    const name = options.name ?? `pod${suffix}`;
    if (!/^\S+$/.test(name) || this.#podNames.has(name)) {
      throw new TypeError(`Cannot add pod "${name}" to ${host.name}: name must be one unique word`);
    }
    this.#podNames.add(name);
    const ns = `${this.prefix}-p${suffix}`;
    const hostVeth = `veth-${suffix}`;
    const ipv4 = podIPv4(node, k);
    const ipv6 = podIPv6(node, k);
    const what = `pod ${name} (${ns})`;
    await this.#addNetns(ns);
    await setSysctls(ns, COMMON_SYSCTLS);
    await ipBatch(`wire ${what} on ${host.ns}`, host.ns, podHostLinks(hostVeth, ns, ipv4, ipv6));
    await setSysctls(host.ns, podHostSysctls(hostVeth));
    await ipBatch(`configure ${what}`, ns, podLinks(ipv4, ipv6));
    const startEcho = options.startEcho ?? this.#defaults.startEcho;
    const ports = options.echoPorts ?? this.#defaults.echoPorts;
    const echo = startEcho
      ? await EchoServer.start(ns, { name, tcpPorts: ports, udpPorts: ports })
      : undefined;
    const pod: PodHandle = { kind: "pod", name, ns, node, ipv4, ipv6, hostVeth, echo };
    this.#pods.push(pod);
    return pod;
  }

  /** Stops a pod's server and deletes its veth (and so the node's routes to it) and namespace. */
  async removePod(pod: PodHandle | string): Promise<void> {
    this.#assertOpen("remove a pod");
    const target = typeof pod === "string" ? this.pod(pod) : pod;
    if (!this.#pods.includes(target)) {
      throw new RangeError(`Cannot remove pod ${target.name}: not a current pod of ${this.prefix}`);
    }
    this.#pods = this.#pods.filter((p) => p !== target);
    await target.echo?.stop();
    await runChecked(`delete veth ${target.hostVeth} of pod ${target.name}`, [
      "ip",
      "-n",
      this.node(target.node).ns,
      "link",
      "delete",
      target.hostVeth,
    ]);
    await this.#deleteNetns(target.ns);
    this.#podNames.delete(target.name);
  }

  /** Starts an echo server in a node namespace ("hostNetwork"), answering on the node's IPs. */
  async startHostEcho(node: number, options: HostEchoOptions): Promise<EchoServer> {
    this.#assertOpen("start a host echo server");
    const ports = options.ports ?? this.#defaults.echoPorts;
    const server = await EchoServer.start(this.node(node).ns, {
      name: options.name,
      tcpPorts: ports,
      udpPorts: ports,
    });
    this.#hostServers.push(server);
    return server;
  }

  /** Routes `prefix` (e.g. "203.0.113.0/24") from the client via node `node`'s IP. */
  async routeViaNode(prefix: string, node: number): Promise<void> {
    const via = prefix.includes(":") ? this.node(node).ipv6 : this.node(node).ipv4;
    await runChecked(`route ${prefix} via ${this.node(node).name} in the client`, [
      "ip",
      "-n",
      this.client.ns,
      "route",
      "replace",
      prefix,
      "via",
      via,
    ]);
  }

  /** Runs argv in a testbed namespace, with a deadline (default 10 s). */
  exec(place: Place, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    return execInNetns(this.ns(place), argv, options);
  }

  /** One request to an echo server from `from`. */
  async request(from: Place, request: ProbeRequest): Promise<ProbeResult> {
    const [result] = await probeFromNetns(this.ns(from), [request]);
    if (result === undefined) {
      throw new Error(`Cannot send a probe from ${this.ns(from)}: no result`);
    }
    return result;
  }

  /** Many requests from one process, each with its own socket; results in request order. */
  requestMany(
    from: Place,
    requests: readonly ProbeRequest[],
    options: ProbeManyOptions = {},
  ): Promise<ProbeResult[]> {
    return probeFromNetns(this.ns(from), requests, options);
  }

  /** Loads an nftables JSON batch (`nft -j -f -`); a node index picks that node. */
  nft(place: Place, batch: string | object): Promise<void> {
    return loadNftBatch(this.ns(place), batch);
  }

  /** Loads rules in nft's text syntax (`nft -f -`). */
  nftText(place: Place, ruleset: string): Promise<void> {
    return loadNftText(this.ns(place), ruleset);
  }

  /** `nft -j list ruleset`, parsed. */
  listRuleset(place: Place): Promise<{ nftables: Record<string, unknown>[] }> {
    return listNftRuleset(this.ns(place));
  }

  /** `conntrack <args>` with entries parsed; does not throw on a non-zero exit. */
  conntrack(place: Place, args: string[]): Promise<ConntrackResult> {
    return runConntrack(this.ns(place), args);
  }

  /** `conntrack -L <filter>`, parsed. */
  listConntrack(place: Place, filter: string[] = []): Promise<ConntrackEntry[]> {
    return listConntrack(this.ns(place), filter);
  }

  /** Sets sysctls in a namespace, e.g. {"net.ipv4.conf.all.rp_filter": 1}. */
  sysctl(place: Place, values: Record<string, string | number>): Promise<void> {
    return setSysctls(this.ns(place), values);
  }

  readSysctl(place: Place, key: string): Promise<string> {
    return readSysctl(this.ns(place), key);
  }

  /** The namespace name of a place; refuses namespaces that are not this testbed's. */
  ns(place: Place): string {
    if (typeof place === "number") return this.node(place).ns;
    const ns = typeof place === "string" ? place : place.ns;
    if (!this.#namespaces.has(ns)) {
      throw new RangeError(`Cannot use namespace ${ns}: not part of testbed ${this.prefix}`);
    }
    return ns;
  }

  /** Stops every server and deletes every namespace. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const problems: string[] = [];
    const servers = [...this.#hostServers, ...this.#pods.flatMap((p) => (p.echo ? [p.echo] : []))];
    const stopped = await Promise.allSettled(servers.map((server) => server.stop()));
    stopped.forEach((outcome, i) => {
      if (outcome.status === "rejected") {
        problems.push(`stop echo server ${servers[i]?.name}: ${describe(outcome.reason)}`);
      }
    });
    // Pods first, then nodes, lan and client (the reverse of creation).
    const namespaces = [...this.#namespaces].reverse();
    const deleted = await Promise.allSettled(namespaces.map((ns) => this.#deleteNetns(ns)));
    deleted.forEach((outcome) => {
      if (outcome.status === "rejected") problems.push(describe(outcome.reason));
    });
    this.#pods = [];
    this.#hostServers = [];
    untrack(this);
    if (problems.length > 0) {
      throw new Error(`Cannot close testbed ${this.prefix}: ${problems.join("; ")}`);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Interrupt-time teardown (no awaiting): SIGKILL servers, delete namespaces. */
  cleanupSync(): void {
    this.#closed = true;
    for (
      const server of [...this.#hostServers, ...this.#pods.flatMap((p) => (p.echo ? [p.echo] : []))]
    ) {
      server.killSync();
    }
    for (const ns of [...this.#namespaces].reverse()) {
      const output = new Deno.Command("ip", { args: ["netns", "delete", ns], stderr: "piped" })
        .outputSync();
      if (output.success) this.#namespaces.delete(ns);
      else {console.error(
          `kpx testbed: cannot delete namespace ${ns}: ${new TextDecoder().decode(output.stderr)}`,
        );}
    }
  }

  async #deleteNetns(ns: string): Promise<void> {
    // A process left inside (e.g. from exec with a shell) would keep the namespace alive.
    await killProcessesIn(ns);
    await runChecked(`delete namespace ${ns}`, ["ip", "netns", "delete", ns]);
    this.#namespaces.delete(ns);
  }

  #assertOpen(action: string): void {
    if (this.#closed) throw new Error(`Cannot ${action}: testbed ${this.prefix} is closed`);
  }
}

function lastOctet(ipv4: string): number {
  return Number(ipv4.slice(ipv4.lastIndexOf(".") + 1));
}

/**
 * Like Promise.all, but waits for every promise before throwing the first failure: cleanup
 * must not start while a sibling step is still creating namespaces.
 */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const outcomes = await Promise.allSettled(promises);
  const failures = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason] : []));
  if (failures.length > 0) throw failures[0];
  return outcomes.map((o) => (o as PromiseFulfilledResult<T>).value);
}
