/**
 * The comparison's namespaces: a client ("pod"), a backend holding every
 * endpoint address, and a fresh node namespace between them for each ruleset
 * loaded. Nothing is linked to the root namespace: every veth is created in
 * the node namespace with its peer placed straight into the client or backend.
 *
 *   client  eth0 10.120.0.2/24 ── vc 10.120.0.1 [node] vb 192.168.200.1 ── eth0 192.168.200.2  backend
 *   (a pod: inside the cluster     routes 10.64.0.0/13          AnyIP: 10.64.0.0/13 is local,
 *    CIDR 10.64.0.0/10)            via the backend              one listener on 0.0.0.0:8080
 *
 * Every synthetic endpoint (10.64.0.0-10.71.255.255) lands on the backend's
 * listener, so connections can go to any of the loaded services.
 */
import { run, runChecked } from "./_compare_exec.ts";

export const CLIENT_IP = "10.120.0.2";
export const ENDPOINT_RANGE = "10.64.0.0/13";
export const BACKEND_PORT = 8080;

/** Sysctls of every node namespace (net.* sysctls are per namespace). */
const NODE_SYSCTLS: Record<string, string> = {
  "net.ipv4.ip_forward": "1",
  "net.ipv4.conf.all.rp_filter": "0",
  "net.ipv4.conf.default.rp_filter": "0",
  // Each measured connection ends with a RST: its conntrack entry goes to
  // CLOSE (10 s by default). One second keeps the table small between the
  // explicit flushes before each measurement.
  "net.netfilter.nf_conntrack_tcp_timeout_close": "1",
  "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
};

let instances = 0;

function besideThisModule(file: string): string {
  return decodeURIComponent(new URL(file, import.meta.url).pathname);
}

/** A node namespace of the topology; `exec` prefixes a command to run inside it. */
export interface NodeNs {
  readonly ns: string;
  readonly exec: readonly string[];
}

export class DataplaneTopology {
  readonly client: string;
  readonly backend: string;
  readonly #prefix: string;
  #nodes = new Set<string>();
  #sink: Deno.ChildProcess | undefined;
  #made: string[] = [];
  #counter = 0;
  #onSignal = () => this.#emergencyCleanup();

  private constructor(prefix: string) {
    this.#prefix = prefix;
    this.client = `${prefix}-c`;
    this.backend = `${prefix}-b`;
  }

  /** Creates the client and backend namespaces and starts the backend's listener. */
  static async create(): Promise<DataplaneTopology> {
    const topo = new DataplaneTopology(`kpxc${Deno.pid}x${instances++}`);
    // An interrupted benchmark must not leave namespaces behind.
    Deno.addSignalListener("SIGINT", topo.#onSignal);
    Deno.addSignalListener("SIGTERM", topo.#onSignal);
    try {
      await topo.#addNs(topo.client);
      await topo.#addNs(topo.backend);
      await topo.#ipBatch(topo.client, ["link set lo up"]);
      await topo.#ipBatch(topo.backend, [
        "link set lo up",
        `route add local ${ENDPOINT_RANGE} dev lo`,
      ]);
      await topo.#startSink();
    } catch (e) {
      await topo.close();
      throw e;
    }
    return topo;
  }

  async #addNs(ns: string): Promise<void> {
    await runChecked(`create namespace ${ns}`, ["ip", "netns", "add", ns]);
    this.#made.push(ns);
  }

  async #ipBatch(ns: string, lines: string[]): Promise<void> {
    await runChecked(
      `configure namespace ${ns}`,
      ["ip", "-n", ns, "-batch", "-"],
      new TextEncoder().encode(lines.join("\n") + "\n"),
    );
  }

  async #startSink(): Promise<void> {
    this.#sink = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.backend,
        Deno.execPath(),
        "run",
        "--no-config",
        "--no-prompt",
        "--allow-ffi",
        besideThisModule("./dataplane_sink.ts"),
        String(BACKEND_PORT),
      ],
      stdout: "piped",
      stderr: "inherit",
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    }).spawn();
    const reader = this.#sink.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    reader.releaseLock();
    if (first.done || !first.value.includes("ready")) {
      throw new Error(
        `Cannot start the backend listener in ${this.backend}: it exited before listening`,
      );
    }
    // Drain anything else it prints so it never blocks on a full pipe.
    this.#sink.stdout.pipeTo(new WritableStream()).catch(() => {});
  }

  /** A fresh node namespace wired to the client and the backend. */
  async addNode(): Promise<NodeNs> {
    const ns = `${this.#prefix}-n${this.#counter++}`;
    await this.#addNs(ns);
    this.#nodes.add(ns);
    await this.#ipBatch(ns, [
      "link set lo up",
      `link add vc type veth peer name eth0 netns ${this.client}`,
      `link add vb type veth peer name eth0 netns ${this.backend}`,
      "addr add 10.120.0.1/24 dev vc",
      "addr add 192.168.200.1/24 dev vb",
      "link set vc up",
      "link set vb up",
      `route add ${ENDPOINT_RANGE} via 192.168.200.2`,
    ]);
    await this.#ipBatch(this.client, [
      `addr add ${CLIENT_IP}/24 dev eth0`,
      "link set eth0 up",
      "route add default via 10.120.0.1",
    ]);
    await this.#ipBatch(this.backend, [
      "addr add 192.168.200.2/24 dev eth0",
      "link set eth0 up",
      "route add default via 192.168.200.1",
    ]);
    const exec = ["ip", "netns", "exec", ns];
    for (const [key, value] of Object.entries(NODE_SYSCTLS)) {
      await runChecked(`set ${key} in ${ns}`, [...exec, "sysctl", "-q", "-w", `${key}=${value}`]);
    }
    // Not writable in a child namespace on every kernel; the short timeouts above suffice.
    await run([...exec, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_max=1048576"]);
    return { ns, exec };
  }

  /** Deletes a node namespace (its veths first, synchronously, so the next node can reuse eth0). */
  async removeNode(node: NodeNs): Promise<void> {
    if (!this.#nodes.has(node.ns)) {
      throw new RangeError(`Cannot remove node namespace ${node.ns}: not one of this topology's`);
    }
    await run(["ip", "-n", node.ns, "link", "del", "vc"]);
    await run(["ip", "-n", node.ns, "link", "del", "vb"]);
    await runChecked(`delete namespace ${node.ns}`, ["ip", "netns", "del", node.ns]);
    this.#nodes.delete(node.ns);
    this.#made = this.#made.filter((n) => n !== node.ns);
  }

  /** Stops the listener and deletes every namespace made. Safe to call twice. */
  async close(): Promise<void> {
    Deno.removeSignalListener("SIGINT", this.#onSignal);
    Deno.removeSignalListener("SIGTERM", this.#onSignal);
    if (this.#sink) {
      try {
        this.#sink.kill("SIGKILL");
      } catch {
        // Already exited: nothing to stop.
      }
      await this.#sink.status;
      this.#sink = undefined;
    }
    const problems: string[] = [];
    for (const ns of [...this.#made].reverse()) {
      const r = await run(["ip", "netns", "del", ns]);
      if (r.code !== 0) problems.push(`${ns}: ${r.stderr.trim()}`);
    }
    this.#made = [];
    this.#nodes.clear();
    if (problems.length > 0) {
      throw new Error(`Cannot delete the comparison's namespaces: ${problems.join("; ")}`);
    }
  }

  /** On SIGINT/SIGTERM: kill the listener, delete the namespaces, then exit. */
  #emergencyCleanup(): void {
    try {
      this.#sink?.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    for (const ns of [...this.#made].reverse()) {
      new Deno.Command("ip", { args: ["netns", "del", ns], stderr: "null" }).outputSync();
    }
    // The benchmark was interrupted: there is nothing to return to.
    Deno.exit(130);
  }
}
