/**
 * One sync in IPVS mode. The plan has two sides: the nftables batch (one
 * transaction, as in nftables mode) and the IPVS state, which has no
 * transactions. So the IPVS side is diffed against what the kernel holds,
 * applied, read back, and undone when anything fails:
 *
 *   1. add kube-ipvs0 addresses       (undo: remove them)
 *   2. ipvsadm -R the IPVS changes    (undo: diff the kernel back to what it was)
 *   3. nft -j -f the batch            (nothing applied on failure)
 *   4. verify: the virtual services touched, the nftables marker
 *   5. remove kube-ipvs0 addresses no service holds
 *
 * A failure at 2-4 undoes 1-2 and the sync reports restored=true when the
 * kernel is back where it was; either way the next sync is a full one,
 * diffed against the kernel afresh. Addresses go first and last so a
 * virtual service's address is local whenever the service exists.
 *
 * A full sync reads the whole IPVS table and looks at every virtual service
 * kpx owns (see ownsService()); a delta reads and changes only the virtual
 * services of the changed services, so its cost does not grow with the
 * cluster. Real servers draining in other virtual services are looked at
 * again in the next full sync (every syncPeriod).
 */
import type { Logger } from "../log/mod.ts";
import type { KpxMetrics } from "../metrics/mod.ts";
import {
  type Inventory,
  isIPVSPlanOutput,
  type PendingPlan,
  type PlanContext,
  type Planner,
  PlannerError,
  PlanSession,
  type VirtualService,
} from "../planner/mod.ts";
import type { ClusterState } from "../state/mod.ts";
import type { SyncOutcome } from "./applier.ts";
import { VerificationError, verifyMarker } from "./verify.ts";
import { clearFlows, staleFlows } from "./conntrack.ts";
import { type Graceful, reconcile } from "./ipvs_diff.ts";
import { DesiredIPVS, type StagedIPVS } from "./ipvs_desired.ts";
import type { DummyLink } from "./ipvs_link.ts";
import { type IPVSTable, ownsService, sameService } from "./ipvs_state.ts";
import { type Ipvs, IpvsApplyError } from "./ipvsadm.ts";
import type { Nft, TableState } from "./nft.ts";
import type { Runner } from "./process.ts";

export interface IPVSApplierOptions {
  nft: Nft;
  ipvs: Ipvs;
  link: DummyLink;
  /** The planner; the applier plans IPVS mode with its forIPVS(). */
  planner: Planner;
  log: Logger;
  metrics: KpxMetrics;
  /** ipvs.excludeCIDRs: virtual services kpx leaves alone. */
  excludeCIDRs?: readonly string[];
  /** Runs the conntrack tool; absent: no conntrack cleanup. */
  conntrack?: Runner;
  /** A draining TCP real server is deleted after this long even with connections (default 15 min). */
  drainTimeoutMs?: number;
  /** Above this many virtual services, a sync reads the whole table instead of each one (default 8). */
  readEachLimit?: number;
  /** Milliseconds, for drain times (tests). */
  now?: () => number;
}

/** 15 minutes: IPVS's own idle timeout for established TCP connections. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 15 * 60_000;

function inventoryOf(t: TableState): Inventory {
  return { layout: t.exists ? (t.layout || -1) : 0, chains: t.chains, sets: t.sets };
}

function pick(table: IPVSTable, keys: Iterable<string>): IPVSTable {
  const out: IPVSTable = new Map();
  for (const k of keys) {
    const s = table.get(k);
    if (s) out.set(k, s);
  }
  return out;
}

/** Keys where the kernel differs from what was expected (connection counts aside). */
function mismatches(
  got: IPVSTable,
  want: ReadonlyMap<string, VirtualService>,
  keys: Iterable<string>,
): string[] {
  const out: string[] = [];
  for (const k of keys) {
    const g = got.get(k);
    const w = want.get(k);
    if (!g && !w) continue;
    if (!g || !w || !sameService(g, w)) out.push(k);
  }
  return out;
}

export class IPVSApplier {
  readonly session: PlanSession;
  #o: IPVSApplierOptions;
  #layout: number;
  #desired = new DesiredIPVS();
  /** The kernel's virtual services kpx manages, as last verified (draining ones included). */
  #applied: IPVSTable = new Map();
  #drains = new Map<string, number>();
  /** kube-ipvs0's addresses as last applied. */
  #bound = new Set<string>();
  #baseline = false;

  constructor(opts: IPVSApplierOptions) {
    this.#o = opts;
    const planner = opts.planner.forIPVS();
    this.#layout = planner.layoutVersion;
    this.session = new PlanSession(planner);
  }

  get #now(): number {
    return this.#o.now?.() ?? Date.now();
  }

  /** Real servers currently draining ("<service key> <real key>" -> since, ms). */
  get drains(): ReadonlyMap<string, number> {
    return this.#drains;
  }

  /** Creates kube-ipvs0 if needed and reads what an earlier kpx left in nftables. */
  async init(): Promise<TableState> {
    if (await this.#o.link.ensure()) {
      this.#o.log.info("Created the IPVS dummy interface", { interface: "kube-ipvs0" });
    }
    const table = await this.#o.nft.readTable();
    this.session.invalidate(inventoryOf(table));
    this.session.resumeGeneration(table.generation);
    if (table.exists) {
      this.#o.log.info(
        "Found kpx rules from an earlier run; they stay until the first sync replaces them",
        {
          generation: table.generation,
          layout: table.layout,
        },
      );
    }
    return table;
  }

  async #kernelInventory(): Promise<Inventory | undefined> {
    try {
      return inventoryOf(await this.#o.nft.readTable());
    } catch (e) {
      this.#o.log.warn("Cannot read kpx's nftables table", { error: e });
      return undefined;
    }
  }

  /** The kernel's virtual services among `keys`: one by one when few, else the whole table. */
  async #read(keys: ReadonlySet<string>, all: boolean): Promise<IPVSTable> {
    if (all || keys.size > (this.#o.readEachLimit ?? 8)) {
      return pick(await this.#o.ipvs.list(), keys);
    }
    const out: IPVSTable = new Map();
    for (const k of keys) {
      const s = await this.#o.ipvs.listService(k);
      if (s) out.set(k, s);
    }
    return out;
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
    const m = this.#o.metrics;
    let t = performance.now();
    let pending: PendingPlan;
    try {
      if (!ctx.ipvs) {
        throw new TypeError("Cannot plan IPVS mode: the plan context has no ipvs part");
      }
      pending = this.session.plan(state, ctx, opts);
      if (!isIPVSPlanOutput(pending.output)) {
        throw new TypeError("Cannot plan IPVS mode: the planner returned no IPVS state");
      }
    } catch (e) {
      this.session.invalidate();
      out.error = e instanceof PlannerError ? e : new PlannerError("Cannot plan", { cause: e });
      m.nftablesSyncFailures.inc();
      return out;
    }
    const plan = pending.output;
    out.planMs = performance.now() - t;
    out.full = pending.full;
    out.services = pending.services;
    out.bytes = plan.bytes;
    m.plannerDuration.observe(out.planMs / 1000, { mode: pending.full ? "full" : "delta" });
    for (const w of plan.warnings) this.#o.log.warn(w);

    t = performance.now();
    try {
      await this.#apply(
        pending,
        this.#desired.stage(pending.full, plan.ipvs.records),
        ctx.ipvs.nodeIPs,
        out,
      );
    } catch (e) {
      // Every failure is reported in the outcome (the daemon logs it); the
      // next sync is a full one against what the kernel really holds.
      out.error = e instanceof Error
        ? e
        : new IpvsApplyError("Cannot apply the IPVS plan", { cause: e });
      m.applyFailures.inc();
      m.nftablesSyncFailures.inc();
      this.session.invalidate(await this.#kernelInventory());
      return out;
    } finally {
      out.applyMs = performance.now() - t - out.verifyMs;
    }
    out.ok = true;
    out.generation = pending.generation;
    m.generation.set(pending.generation);
    m.batchBytes.set(out.bytes, { mode: pending.full ? "full" : "delta" });
    if (this.#o.conntrack && this.#baseline) await this.#clearConntrack(pending);
    this.#baseline = true;
    return out;
  }

  async #apply(
    pending: PendingPlan,
    staged: StagedIPVS,
    nodeIPs: readonly string[],
    out: SyncOutcome,
  ): Promise<void> {
    const { ipvs, link, nft, log } = this.#o;
    // -- what the kernel has, for the keys this sync looks at.
    let kernel: IPVSTable;
    let bound: Set<string>;
    const keys = new Set(staged.keys);
    if (staged.full) {
      const all = await ipvs.list();
      bound = new Set(await link.addresses());
      const own = {
        boundAddresses: bound,
        nodeIPs: new Set(nodeIPs),
        known: new Set(this.#applied.keys()),
        excludeCIDRs: this.#o.excludeCIDRs ?? [],
      };
      for (const [k, s] of all) if (staged.desired.has(k) || ownsService(s, own)) keys.add(k);
      kernel = pick(all, keys);
    } else {
      kernel = await this.#read(keys, false);
      bound = new Set(this.#bound);
    }

    // -- the changes.
    const graceful: Graceful = {
      drains: this.#drains,
      now: this.#now,
      timeoutMs: this.#o.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
    };
    const rec = reconcile(kernel, staged.desired, graceful);
    // A virtual service kept for its draining real servers keeps its address.
    const keep = new Set(
      [...rec.expected.values()].map((s) => s.address).filter((a) => bound.has(a)),
    );
    const want = staged.full
      ? new Set([...staged.bind, ...keep])
      : new Set([...bound, ...staged.bind].filter((a) => !staged.unbind.has(a) || keep.has(a)));
    const addAddrs = [...want].filter((a) => !bound.has(a)).sort();
    const delAddrs = [...bound].filter((a) => !want.has(a)).sort();

    // -- 1. addresses, 2. IPVS, 3. nftables; undo on failure.
    const undoAddrs = async () => {
      if (addAddrs.length === 0) return;
      const errs = await link.change([], addAddrs);
      if (errs.length) {
        log.error("Cannot remove the kube-ipvs0 addresses of a failed sync", {
          errors: errs.join("; "),
        });
      }
    };
    if (addAddrs.length) {
      const errs = await link.change(addAddrs, []);
      if (errs.length) {
        await undoAddrs();
        throw new IpvsApplyError(
          `Cannot add ${addAddrs.length} address(es) to kube-ipvs0: ${errs.slice(0, 3).join("; ")}`,
        );
      }
    }
    const undoIPVS = async (): Promise<boolean> => {
      const ok = await this.#undo(kernel, keys);
      await undoAddrs();
      out.restored = ok;
      return ok;
    };
    if (rec.ops.length) {
      const errs = await ipvs.restore(rec.ops);
      const got = await this.#read(keys, staged.full);
      const bad = mismatches(got, rec.expected, keys);
      if (errs.length || bad.length) {
        this.#o.metrics.verifyFailures.inc();
        const restored = await undoIPVS();
        throw new IpvsApplyError(
          `Cannot apply ${rec.ops.length} IPVS change(s)` +
            (errs.length ? `: ${errs.slice(0, 3).join("; ")}` : "") +
            (bad.length
              ? `; ${bad.length} virtual service(s) differ after applying: ${
                bad.slice(0, 3).join(", ")
              }`
              : "") +
            (restored
              ? "; the previous IPVS state is restored"
              : "; the previous IPVS state could NOT be restored"),
        );
      }
    }
    try {
      await nft.apply(pending.output.chunks);
    } catch (e) {
      await undoIPVS();
      throw e;
    }
    const v = performance.now();
    try {
      await this.#verifyMarker(pending);
    } catch (e) {
      this.#o.metrics.verifyFailures.inc();
      await this.#restoreNft();
      await undoIPVS();
      throw e;
    } finally {
      out.verifyMs = performance.now() - v;
    }

    // -- 5. addresses no longer used; their failure only costs a full resync.
    if (delAddrs.length) {
      const errs = await link.change([], delAddrs);
      if (errs.length) {
        throw new IpvsApplyError(
          `Cannot remove ${delAddrs.length} address(es) from kube-ipvs0: ${
            errs.slice(0, 3).join("; ")
          }`,
        );
      }
    }
    if (staged.full) {
      const now = new Set(await link.addresses());
      const wrong = [...want].filter((a) => !now.has(a)).concat(
        [...now].filter((a) => !want.has(a)),
      );
      if (wrong.length) {
        throw new VerificationError(
          `Cannot verify kube-ipvs0's addresses: ${wrong.slice(0, 3).join(", ")} differ`,
        );
      }
    }

    // -- commit.
    pending.commit();
    staged.commit();
    if (staged.full) this.#applied = new Map();
    for (const k of keys) {
      const s = rec.expected.get(k);
      if (s) {
        this.#applied.set(k, {
          ...s,
          reals: s.reals.map((r) => ({ ...r, activeConns: 0, inactiveConns: 0 })),
        });
      } else this.#applied.delete(k);
    }
    const started = [...rec.drains.keys()].filter((k) => !this.#drains.has(k));
    if (staged.full) this.#drains = new Map();
    for (const k of [...this.#drains.keys()]) {
      if (keys.has(k.slice(0, k.lastIndexOf(" ")))) this.#drains.delete(k);
    }
    for (const [k, since] of rec.drains) this.#drains.set(k, since);
    this.#bound = want;
    if (started.length) {
      log.info("Draining real servers (weight 0 until their connections end)", {
        realServers: started.slice(0, 5).join(", "),
        count: started.length,
      });
    }
  }

  /**
   * Puts the virtual services `keys` back as `before` has them (absent ones
   * deleted), immediately, without draining; true if read back as such.
   */
  async #undo(before: IPVSTable, keys: ReadonlySet<string>): Promise<boolean> {
    try {
      const now = await this.#read(keys, false);
      const back = reconcile(now, before);
      if (back.ops.length === 0) return true;
      const errs = await this.#o.ipvs.restore(back.ops);
      const got = await this.#read(keys, false);
      const bad = mismatches(got, before, keys);
      if (errs.length || bad.length) {
        this.#o.log.error("Cannot restore the previous IPVS state", {
          errors: errs.slice(0, 3).join("; "),
          differ: bad.slice(0, 3).join(", "),
        });
        return false;
      }
      this.#o.metrics.rollbacks.inc();
      this.#o.log.warn("Restored the previous IPVS state", { changes: back.ops.length });
      return true;
    } catch (e) {
      this.#o.log.error("Cannot restore the previous IPVS state", { error: e });
      return false;
    }
  }

  async #verifyMarker(p: PendingPlan): Promise<void> {
    verifyMarker(await this.#o.nft.readMarker(this.#layout), p);
  }

  /** Re-applies the last verified nftables table after a failed verification. */
  async #restoreNft(): Promise<void> {
    const inv = await this.#kernelInventory();
    if (!inv) return;
    try {
      const restore = this.session.planRestore(inv);
      if (!restore) return;
      await this.#o.nft.apply(restore.output.chunks);
      await this.#verifyMarker(restore);
      restore.commit();
      this.#o.log.warn("Restored the last good nftables rules", { generation: restore.generation });
    } catch (e) {
      this.#o.log.error("Cannot restore the last good nftables rules", { error: e });
    }
  }

  async #clearConntrack(p: PendingPlan): Promise<void> {
    const filters = p.changes().flatMap(staleFlows);
    if (filters.length === 0) return;
    const res = await clearFlows(this.#o.conntrack!, filters);
    this.#o.metrics.conntrackDeleted.inc({}, res.deleted);
    for (const e of res.errors) {
      this.#o.metrics.conntrackFailures.inc();
      this.#o.log.warn(e);
    }
  }
}
