/**
 * PlanSession: what was last applied to the kernel (per service, the table's
 * inventory, the generation, the plan context), so the next plan can be a
 * delta of only the changed services. A plan becomes "applied" only when the
 * caller commits it after a successful, verified apply; a failed apply leaves
 * the session as it was and the caller asks for a full plan.
 */
import type { ClusterState, Service } from "../state/mod.ts";
import type { ServiceChange } from "./encode.ts";
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

export class PlanSession {
  #planner: Planner;
  #applied = new Map<string, Service>();
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
    if (full) return this.#fullPlan(state.services(), ctx, generation);
    const now = new Map<string, Service | null>();
    const list: ServiceChange[] = [];
    for (const id of changes.services) {
      const n = state.service(id);
      const o = this.#applied.get(id) ?? null;
      now.set(id, n);
      if (o || n) list.push({ old: o, now: n });
    }
    const output = this.#planner.planDelta(list, ctx, this.#inventory, generation);
    const inventory = nextInventory(this.#inventory, output, this.#planner.layoutVersion);
    return {
      full: false,
      output,
      generation,
      services: list.length,
      inventory,
      changes: () => list,
      commit: () => {
        for (const [id, s] of now) {
          if (s) this.#applied.set(id, s);
          else this.#applied.delete(id);
        }
        this.#inventory = inventory;
        this.#generation = generation;
      },
    };
  }

  #fullPlan(services: Service[], ctx: PlanContext, generation: number): PendingPlan {
    const ctxKey = JSON.stringify(ctx);
    const output = this.#planner.planFull(services, ctx, this.#inventory, generation);
    const inventory = nextInventory(this.#inventory, output, this.#planner.layoutVersion);
    const previous = this.#applied;
    return {
      full: true,
      output,
      generation,
      services: services.length,
      inventory,
      changes: () => {
        const now = new Map(services.map((s) => [s.id, s]));
        const out: ServiceChange[] = [];
        for (const id of new Set([...previous.keys(), ...now.keys()])) {
          out.push({ old: previous.get(id) ?? null, now: now.get(id) ?? null });
        }
        return out;
      },
      commit: () => {
        this.#applied = new Map(services.map((s) => [s.id, s]));
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
    return this.#fullPlan([...this.#applied.values()], JSON.parse(this.#context) as PlanContext, generation);
  }

  /** Takes over the kernel's generation counter (after a restart), so generations keep rising. */
  resumeGeneration(generation: number): void {
    if (generation > this.#generation) this.#generation = generation;
  }
}
