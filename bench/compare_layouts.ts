/**
 * The four rulesets the comparison loads, behind one interface: kpx (its
 * planner's JSON batch through `nft -j -f`), kube-proxy's nftables layout
 * (`nft -f`), and kube-proxy's iptables layout through iptables-nft-restore
 * and iptables-legacy-restore. A session holds what one namespace's ruleset
 * needs between calls (kpx's inventory, kube-proxy's pending stale chains).
 */
import {
  EMPTY_INVENTORY,
  type Inventory,
  nextInventory,
  type Planner,
} from "../src/planner/mod.ts";
import type { Service } from "../src/state/mod.ts";
import { NftCli, ProcessRunner } from "../src/apply/mod.ts";
import {
  KUBE_NFTABLES_SYNC_LISTINGS,
  kubeIptablesChange,
  kubeIptablesChunks,
  kubeIptablesFull,
  kubeNftablesChange,
  kubeNftablesFull,
  REFERENCE_OPTIONS,
} from "./reference/mod.ts";
import { runChecked, timeChecked } from "./_compare_exec.ts";
import { BENCH_CONTEXT } from "./plan_bench.ts";
import type { NodeNs } from "./dataplane_topology.ts";

export const LAYOUTS = ["kpx", "kube-nftables", "iptables-nft", "iptables-legacy"] as const;
export type LayoutName = typeof LAYOUTS[number];

export const LAYOUT_LABELS: Record<LayoutName, string> = {
  "kpx": "kpx",
  "kube-nftables": "kube-proxy nftables",
  "iptables-nft": "kube-proxy iptables (iptables-nft)",
  "iptables-legacy": "kube-proxy iptables (iptables-legacy)",
};

/** Timings of one one-service change, milliseconds. */
export interface ChangeTiming {
  /** The transaction that changes the kernel (process start-up included). */
  apply: number;
  /** What the proxy also runs on every sync: kpx's read-back, kube-proxy's listings; 0 if nothing. */
  reads: number;
}

export interface LayoutSession {
  /** Loads the whole ruleset into the (empty) namespace in one run; milliseconds. */
  fullSync(): Promise<number>;
  /** Gets the same ruleset in place without timing it (see kubeIptablesChunks()). */
  loadUntimed(): Promise<void>;
  /** Applies "service `now.id` changed from `old` to `now`". */
  change(old: Service, now: Service, all: readonly Service[]): Promise<ChangeTiming>;
  /** Removes the ruleset (so deleting the namespace does not leave the kernel busy). */
  flush(): Promise<void>;
}

const encoder = new TextEncoder();

/** Services per iptables-restore when loading (not timing) a large iptables ruleset. */
const IPTABLES_CHUNK = 500;

/** Parts of kpx's one-service change, each timed alone on the loaded table (ms). */
export interface DeltaAnatomy {
  /** `nft -j -f` of an empty batch: starting the process and nft. */
  empty: number;
  /** Adding one map element (no deletion in the transaction). */
  addElement: number;
  /** Deleting that element again. */
  removeElement: number;
  /** The generation marker update every kpx batch ends with: flush the set, add one element. */
  marker: number;
}

class KpxSession implements LayoutSession {
  #inventory: Inventory = EMPTY_INVENTORY;
  #generation = 0;
  #nft: NftCli;
  constructor(
    private readonly planner: Planner,
    private readonly node: NodeNs,
    private readonly services: readonly Service[],
  ) {
    this.#nft = new NftCli(new ProcessRunner(node.exec));
  }
  async fullSync(): Promise<number> {
    const out = this.planner.planFull(
      this.services,
      BENCH_CONTEXT,
      this.#inventory,
      ++this.#generation,
    );
    const ms = await timeChecked(`load kpx's ruleset into ${this.node.ns}`, [
      ...this.node.exec,
      "nft",
      "-j",
      "-f",
      "-",
    ], out.batch);
    this.#inventory = nextInventory(this.#inventory, out, this.planner.layoutVersion);
    return ms;
  }
  async loadUntimed(): Promise<void> {
    await this.fullSync();
  }
  async change(old: Service, now: Service): Promise<ChangeTiming> {
    const out = this.planner.planDelta(
      [{ old, now }],
      BENCH_CONTEXT,
      this.#inventory,
      ++this.#generation,
    );
    let t = performance.now();
    await this.#nft.apply(out.batch);
    const apply = performance.now() - t;
    // kpx verifies every sync by reading back its chains and generation marker.
    t = performance.now();
    await this.#nft.readMarker(this.planner.layoutVersion);
    const reads = performance.now() - t;
    this.#inventory = nextInventory(this.#inventory, out, this.planner.layoutVersion);
    return { apply, reads };
  }
  async flush(): Promise<void> {
    await runChecked(`flush ${this.node.ns}`, [...this.node.exec, "nft", "flush", "ruleset"]);
  }
  /** Times the pieces a delta is made of (hand-written batches in the planner's JSON form). */
  async anatomy(): Promise<DeltaAnatomy> {
    const set = {
      family: "inet",
      table: "kpx",
      name: `generation-l${this.planner.layoutVersion}`,
    };
    const time = (what: string, cmds: unknown[]) =>
      timeChecked(
        `time ${what} in ${this.node.ns}`,
        [...this.node.exec, "nft", "-j", "-f", "-"],
        encoder.encode(JSON.stringify({ nftables: cmds })),
      );
    const generation = ++this.#generation;
    // A key no service uses (10.95/16 is outside the synthetic ClusterIPs).
    const key = { concat: [`10.95.${generation >> 8 & 255}.${generation & 255}`, "tcp", 80, 0] };
    const map = { family: "inet", table: "kpx", name: "vip-endpoint-addrs4" };
    return {
      empty: await time("an empty batch", []),
      addElement: await time("an element add", [
        { add: { element: { ...map, elem: [[key, "10.64.0.1"]] } } },
      ]),
      removeElement: await time("an element delete", [
        { delete: { element: { ...map, elem: [key] } } },
      ]),
      marker: await time("the generation marker", [
        { flush: { set } },
        { add: { element: { ...set, elem: [generation] } } },
      ]),
    };
  }
}

class KubeNftablesSession implements LayoutSession {
  #cleanup = "";
  constructor(private readonly node: NodeNs, private readonly services: readonly Service[]) {}
  fullSync(): Promise<number> {
    return timeChecked(
      `load kube-proxy's nftables ruleset into ${this.node.ns}`,
      [...this.node.exec, "nft", "-f", "-"],
      encoder.encode(kubeNftablesFull(this.services, REFERENCE_OPTIONS)),
    );
  }
  async loadUntimed(): Promise<void> {
    await this.fullSync();
  }
  async change(old: Service, now: Service): Promise<ChangeTiming> {
    // The previous change's stale chains go in a transaction of their own
    // (kube-proxy deletes them at least a second later): not timed.
    if (this.#cleanup) {
      await runChecked(`delete stale chains in ${this.node.ns}`, [
        ...this.node.exec,
        "nft",
        "-f",
        "-",
      ], encoder.encode(this.#cleanup));
    }
    const tx = kubeNftablesChange(old, now, REFERENCE_OPTIONS);
    const apply = await timeChecked(`apply kube-proxy's partial sync in ${this.node.ns}`, [
      ...this.node.exec,
      "nft",
      "-f",
      "-",
    ], encoder.encode(tx.apply));
    let reads = 0;
    for (const argv of KUBE_NFTABLES_SYNC_LISTINGS) {
      reads += await timeChecked(`list as kube-proxy does in ${this.node.ns}`, [
        ...this.node.exec,
        ...argv,
      ]);
    }
    this.#cleanup = tx.cleanup;
    return { apply, reads };
  }
  async flush(): Promise<void> {
    await runChecked(`flush ${this.node.ns}`, [...this.node.exec, "nft", "flush", "ruleset"]);
  }
}

class IptablesSession implements LayoutSession {
  readonly #restore: string;
  constructor(
    backend: "nft" | "legacy",
    private readonly node: NodeNs,
    private readonly services: readonly Service[],
  ) {
    this.#restore = `iptables-${backend}-restore`;
  }
  fullSync(): Promise<number> {
    return timeChecked(
      `load kube-proxy's iptables ruleset with ${this.#restore} into ${this.node.ns}`,
      [...this.node.exec, this.#restore, "--noflush", "--counters"],
      encoder.encode(kubeIptablesFull(this.services, REFERENCE_OPTIONS)),
    );
  }
  async loadUntimed(): Promise<void> {
    for (const chunk of kubeIptablesChunks(this.services, REFERENCE_OPTIONS, IPTABLES_CHUNK)) {
      await runChecked(
        `load kube-proxy's iptables ruleset with ${this.#restore} into ${this.node.ns}`,
        [
          ...this.node.exec,
          this.#restore,
          "--noflush",
          "--counters",
        ],
        encoder.encode(chunk),
      );
    }
  }
  async change(_old: Service, now: Service, all: readonly Service[]): Promise<ChangeTiming> {
    const apply = await timeChecked(
      `apply kube-proxy's partial iptables sync in ${this.node.ns}`,
      [...this.node.exec, this.#restore, "--noflush", "--counters"],
      encoder.encode(kubeIptablesChange(all, now, REFERENCE_OPTIONS)),
    );
    // In large-cluster mode kube-proxy runs no iptables-save per sync.
    return { apply, reads: 0 };
  }
  async flush(): Promise<void> {
    // Without --noflush a restore replaces each named table: both end up empty.
    await runChecked(
      `flush ${this.node.ns}`,
      [...this.node.exec, this.#restore],
      encoder.encode("*nat\nCOMMIT\n*filter\nCOMMIT\n"),
    );
  }
}

/** A session for `layout` in `node`, for `services`. */
export function openLayout(
  layout: LayoutName,
  planner: Planner,
  node: NodeNs,
  services: readonly Service[],
): LayoutSession & { anatomy?: () => Promise<DeltaAnatomy> } {
  switch (layout) {
    case "kpx":
      return new KpxSession(planner, node, services);
    case "kube-nftables":
      return new KubeNftablesSession(node, services);
    case "iptables-nft":
      return new IptablesSession("nft", node, services);
    case "iptables-legacy":
      return new IptablesSession("legacy", node, services);
  }
}
