/**
 * PlanSession: what was last applied to the kernel (per service, the table's
 * inventory, the generation, the plan context), so the next plan can be a
 * delta of only the changed services. A plan becomes "applied" only when the
 * caller commits it after a successful, verified apply; a failed apply leaves
 * the session as it was and the caller asks for a full plan.
 */
import type { ClusterState, Service } from "../state/mod.ts";
import {
  type EncodedChange,
  type EncodedService,
  encodeService,
  type ServiceChange,
} from "./encode.ts";
import { nextInventory } from "./inventory.ts";
import type { Planner } from "./planner.ts";
import { EMPTY_INVENTORY, type Inventory, type PlanContext, type PlanOutput } from "./types.ts";

export interface PendingPlan {
  full: boolean;
  output: PlanOutput;
  generation: number;
  /** Services the plan covers; all services for a full plan. */
  services: number;
  /** The inventory the kernel will hold once the plan is applied. */
  inventory: Inventory;
  /** Services whose programming the plan changes (for conntrack cleanup). */
  changes(): ServiceChange[];
  /** Marks the plan as applied: the next plan starts from it. */
  commit(): void;
}

/** Every programmable service, joined one at a time (encoded, then dropped). */
function* joinedServices(state: ClusterState): Generator<Service> {
  for (const id of state.serviceIds()) {
    const s = state.service(id);
    if (s) yield s;
  }
}

function hasUDP(s: Service): boolean {
  return s.ports.some((p) => p.protocol === "UDP");
}

export class PlanSession {
  #planner: Planner;
  /** Services as last applied, encoded (a few bytes per endpoint instead of objects). */
  #applied = new Map<string, EncodedService>();
  /** The same, as objects, for UDP services only: conntrack cleanup compares them. */
  #appliedUDP = new Map<string, Service>();
  #inventory: Inventory = EMPTY_INVENTORY;
  #generation = 0;
  #context = "";
  #needFull = true;

  constructor(planner: Planner, opts: { inventory?: Inventory; generation?: number } = {}) {
    this.#planner = planner;
    if (opts.inventory) this.#inventory = opts.inventory;
    this.#generation = opts.generation ?? 0;
  }

  get inventory(): Inventory {
    return this.#inventory;
  }

  get generation(): number {
    return this.#generation;
  }

  /** The kernel may not match what we think (failed apply, restart): next plan is full. */
  invalidate(inventory?: Inventory): void {
    this.#needFull = true;
    if (inventory) this.#inventory = inventory;
  }

  /**
   * Plans the changes taken from `state` (state.takeChanges()). A full plan if
   * asked, if the state says so, if the context changed or if the session was
   * invalidated; otherwise a delta of the changed services.
   */
  plan(state: ClusterState, ctx: PlanContext, opts: { full?: boolean } = {}): PendingPlan {
    const changes = state.takeChanges();
    const ctxKey = JSON.stringify(ctx);
    const full = opts.full || changes.full || this.#needFull || ctxKey !== this.#context;
    // Generations wrap within the marker's 32 bits; 0 means "none".
    const generation = (this.#generation % 0xffffffff) + 1;
    if (full) return this.#fullPlan(joinedServices(state), ctx, generation);
    const now = new Map<string, { service: Service | null; bytes: EncodedService | null }>();
    const list: EncodedChange[] = [];
    const udp: ServiceChange[] = [];
    for (const id of changes.services) {
      const n = state.service(id);
      const bytes = n ? encodeService(n) : null;
      const o = this.#applied.get(id) ?? null;
      now.set(id, { service: n, bytes });
      if (o || bytes) list.push({ old: o, now: bytes });
      const oldUDP = this.#appliedUDP.get(id) ?? null;
      if (oldUDP || (n && hasUDP(n))) udp.push({ old: oldUDP, now: n });
    }
    const output = this.#planner.planDelta(list, ctx, this.#inventory, generation);
    const inventory = nextInventory(this.#inventory, output, this.#planner.layoutVersion);
    return {
      full: false,
      output,
      generation,
      services: list.length,
      inventory,
      changes: () => udp,
      commit: () => {
        for (const [id, { service, bytes }] of now) {
          if (bytes) this.#applied.set(id, bytes);
          else this.#applied.delete(id);
          if (service && hasUDP(service)) this.#appliedUDP.set(id, service);
          else this.#appliedUDP.delete(id);
        }
        this.#inventory = inventory;
        this.#generation = generation;
      },
    };
  }

  /** services: objects (encoded here, one at a time) or bytes (a restore). */
  #fullPlan(
    services: Iterable<Service | [string, EncodedService]>,
    ctx: PlanContext,
    generation: number,
  ): PendingPlan {
    const ctxKey = JSON.stringify(ctx);
    const applied = new Map<string, EncodedService>();
    const appliedUDP = new Map<string, Service>();
    for (const s of services) {
      if (Array.isArray(s)) {
        applied.set(s[0], s[1]);
        continue;
      }
      applied.set(s.id, encodeService(s));
      if (hasUDP(s)) appliedUDP.set(s.id, s);
    }
    const output = this.#planner.planFull([...applied.values()], ctx, this.#inventory, generation);
    const inventory = nextInventory(this.#inventory, output, this.#planner.layoutVersion);
    const previousUDP = this.#appliedUDP;
    return {
      full: true,
      output,
      generation,
      services: applied.size,
      inventory,
      changes: () => {
        const out: ServiceChange[] = [];
        for (const id of new Set([...previousUDP.keys(), ...appliedUDP.keys()])) {
          out.push({ old: previousUDP.get(id) ?? null, now: appliedUDP.get(id) ?? null });
        }
        return out;
      },
      commit: () => {
        this.#applied = applied;
        this.#appliedUDP = appliedUDP;
        this.#inventory = inventory;
        this.#generation = generation;
        this.#context = ctxKey;
        this.#needFull = false;
      },
    };
  }

  /**
   * A full plan of what was last applied, against the given kernel inventory:
   * restores the last good ruleset after a failed verification.
   */
  planRestore(inventory: Inventory): PendingPlan | null {
    if (!this.#context) return null;
    this.#inventory = inventory;
    const generation = (this.#generation % 0xffffffff) + 1;
    // The UDP objects stay as they are: the restored state is the applied one.
    const restore = this.#fullPlan(
      [...this.#applied],
      JSON.parse(this.#context) as PlanContext,
      generation,
    );
    const udp = this.#appliedUDP;
    return {
      ...restore,
      changes: () => [],
      commit: () => {
        restore.commit();
        this.#appliedUDP = udp;
      },
    };
  }

  /** Takes over the kernel's generation counter (after a restart), so generations keep rising. */
  resumeGeneration(generation: number): void {
    if (generation > this.#generation) this.#generation = generation;
  }
}
