/**
 * One sync: plan (full or delta), apply as one nftables transaction, verify
 * by reading back the generation marker and the chains, then clear stale UDP
 * conntrack entries. A refused batch changes nothing in the kernel; a
 * verification mismatch restores the last good ruleset. Either way the next
 * sync is a full one, planned against what the kernel really holds.
 */
import type { Logger } from "../log/mod.ts";
import type { KpxMetrics } from "../metrics/mod.ts";
import {
  type Inventory,
  type PendingPlan,
  type PlanContext,
  type Planner,
  PlannerError,
  PlanSession,
} from "../planner/mod.ts";
import type { ClusterState } from "../state/mod.ts";
import { clearFlows, staleFlows } from "./conntrack.ts";
import { type Nft, NftApplyError, type TableState } from "./nft.ts";
import type { Runner } from "./process.ts";
import { VerificationError, verifyMarker } from "./verify.ts";

export interface SyncOutcome {
  ok: boolean;
  full: boolean;
  generation: number;
  services: number;
  bytes: number;
  planMs: number;
  applyMs: number;
  verifyMs: number;
  /** The last good ruleset was restored after a failed verification. */
  restored: boolean;
  error?: Error;
}

/** The kernel's table does not match what was just applied. */
export { VerificationError };

export interface ApplierOptions {
  nft: Nft;
  planner: Planner;
  log: Logger;
  metrics: KpxMetrics;
  /** Runs the conntrack tool; absent: no conntrack cleanup. */
  conntrack?: Runner;
}

function inventoryOf(t: TableState): Inventory {
  // A table of another layout is replaced whole by the next full plan.
  return { layout: t.exists ? (t.layout || -1) : 0, chains: t.chains, sets: t.sets };
}

export class Applier {
  readonly session: PlanSession;
  #nft: Nft;
  #log: Logger;
  #metrics: KpxMetrics;
  #conntrack: Runner | undefined;
  #layout: number;
  #baseline = false;

  constructor(opts: ApplierOptions) {
    this.#nft = opts.nft;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#conntrack = opts.conntrack;
    this.#layout = opts.planner.layoutVersion;
    this.session = new PlanSession(opts.planner);
  }

  /** Reads what an earlier kpx left, so the first full plan replaces it in one transaction. */
  async init(): Promise<TableState> {
    const table = await this.#nft.readTable();
    this.session.invalidate(inventoryOf(table));
    this.session.resumeGeneration(table.generation);
    if (table.exists) {
      this.#log.info(
        "Found kpx rules from an earlier run; they stay until the first sync replaces them",
        {
          generation: table.generation,
          layout: table.layout,
          chains: table.chains.length,
        },
      );
    }
    return table;
  }

  async #kernelInventory(): Promise<Inventory> {
    return inventoryOf(await this.#nft.readTable());
  }

  async #verify(p: PendingPlan): Promise<void> {
    verifyMarker(await this.#nft.readMarker(this.#layout), p);
  }

  async sync(
    state: ClusterState,
    ctx: PlanContext,
    opts: { full?: boolean } = {},
  ): Promise<SyncOutcome> {
    const out: SyncOutcome = {
      ok: false,
      full: true,
      generation: this.session.generation,
      services: 0,
      bytes: 0,
      planMs: 0,
      applyMs: 0,
      verifyMs: 0,
      restored: false,
    };
    let t = performance.now();
    let pending: PendingPlan;
    try {
      pending = this.session.plan(state, ctx, opts);
    } catch (e) {
      // The planner trapped or refused its input: keep the rules we have.
      this.session.invalidate();
      out.error = e instanceof PlannerError ? e : new PlannerError("Cannot plan", { cause: e });
      this.#metrics.nftablesSyncFailures.inc();
      return out;
    }
    out.planMs = performance.now() - t;
    out.full = pending.full;
    out.services = pending.services;
    out.bytes = pending.output.bytes;
    this.#metrics.plannerDuration.observe(out.planMs / 1000, {
      mode: pending.full ? "full" : "delta",
    });
    for (const w of pending.output.warnings) this.#log.warn(w);

    t = performance.now();
    try {
      await this.#nft.apply(pending.output.chunks);
    } catch (e) {
      out.applyMs = performance.now() - t;
      out.error = e as Error;
      this.#metrics.applyFailures.inc();
      this.#metrics.nftablesSyncFailures.inc();
      // Nothing was applied; the changes this plan consumed must be planned
      // again, in full, against what the kernel really holds.
      this.session.invalidate(await this.#kernelInventory().catch(() => undefined));
      if (!(e instanceof NftApplyError)) throw e;
      return out;
    }
    out.applyMs = performance.now() - t;

    t = performance.now();
    try {
      await this.#verify(pending);
    } catch (e) {
      out.verifyMs = performance.now() - t;
      out.error = e as Error;
      this.#metrics.verifyFailures.inc();
      this.#metrics.nftablesSyncFailures.inc();
      out.restored = await this.#restore();
      this.session.invalidate(
        out.restored ? undefined : await this.#kernelInventory().catch(() => undefined),
      );
      return out;
    }
    out.verifyMs = performance.now() - t;

    pending.commit();
    out.ok = true;
    out.generation = pending.generation;
    this.#metrics.generation.set(pending.generation);
    this.#metrics.batchBytes.set(out.bytes, { mode: pending.full ? "full" : "delta" });
    if (this.#conntrack && this.#baseline) await this.#clearConntrack(pending);
    this.#baseline = true;
    return out;
  }

  /** Re-applies the last verified state; true if it is in the kernel again. */
  async #restore(): Promise<boolean> {
    let restore: PendingPlan | null;
    try {
      restore = this.session.planRestore(await this.#kernelInventory());
    } catch (e) {
      this.#log.error("Cannot plan the last good ruleset", { error: e });
      return false;
    }
    if (!restore) {
      this.#log.error("Cannot restore: no ruleset was applied yet");
      return false;
    }
    try {
      await this.#nft.apply(restore.output.chunks);
      await this.#verify(restore);
    } catch (e) {
      this.#log.error("Cannot restore the last good ruleset", { error: e });
      return false;
    }
    restore.commit();
    this.#metrics.rollbacks.inc();
    this.#log.warn("Restored the last good ruleset", { generation: restore.generation });
    return true;
  }

  async #clearConntrack(p: PendingPlan): Promise<void> {
    const filters = p.changes().flatMap(staleFlows);
    if (filters.length === 0) return;
    const res = await clearFlows(this.#conntrack!, filters);
    this.#metrics.conntrackDeleted.inc({}, res.deleted);
    for (const e of res.errors) {
      this.#metrics.conntrackFailures.inc();
      this.#log.warn(e);
    }
    if (res.deleted > 0) {
      this.#log.info("Deleted stale UDP conntrack entries", {
        entries: res.deleted,
        filters: res.filters,
      }, 2);
    }
  }
}
