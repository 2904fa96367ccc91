/**
 * When to sync, kube-proxy's bounded-frequency runner made explicit: a change
 * asks for a sync; syncs are at least minSyncPeriod apart (changes in between
 * coalesce into one); a full resync happens every syncPeriod; a failed sync is
 * retried with exponential backoff, as a full sync. Nothing is programmed
 * before the sources have their first complete picture.
 */
import type { Clock } from "./clock.ts";

export interface SyncRequest {
  full: boolean;
}

export interface SyncResult {
  ok: boolean;
}

export interface SyncLoopOptions {
  clock: Clock;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  /** First retry delay after a failure; doubles up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  sync(req: SyncRequest): Promise<SyncResult>;
}

export class SyncLoop {
  #opts:
    & Required<Omit<SyncLoopOptions, "sync" | "clock">>
    & Pick<SyncLoopOptions, "sync" | "clock">;
  #pending = false;
  #wantFull = true;
  #ready = false;
  #lastSyncStart = -Infinity;
  #lastFull = -Infinity;
  #failures = 0;
  #wake: (() => void) | undefined;
  #stop = new AbortController();
  #running: Promise<void> | undefined;
  /** Syncs run so far (tests and metrics). */
  syncs = 0;

  constructor(opts: SyncLoopOptions) {
    this.#opts = { backoffMs: 1000, maxBackoffMs: Math.max(opts.syncPeriodMs, 1000), ...opts };
  }

  /** The sources have their first complete picture: syncing may start. */
  markReady(): void {
    this.#ready = true;
    this.#pending = true;
    this.#wake?.();
  }

  /** Something changed: sync soon (within minSyncPeriod). */
  request(opts: { full?: boolean } = {}): void {
    this.#pending = true;
    if (opts.full) this.#wantFull = true;
    this.#wake?.();
  }

  get failures(): number {
    return this.#failures;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  /** Stops after the sync in progress, if any; resolves when stopped. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#wake?.();
    await this.#running;
  }

  #waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const ctl = new AbortController();
      const done = () => {
        this.#wake = undefined;
        ctl.abort();
        resolve();
      };
      this.#wake = done;
      this.#opts.clock.sleep(ms, ctl.signal).then(() => {
        if (this.#wake === done) done();
      });
    });
  }

  async #loop(): Promise<void> {
    const { clock } = this.#opts;
    while (!this.#stop.signal.aborted) {
      const now = clock.now();
      const fullDue = now - this.#lastFull >= this.#opts.syncPeriodMs;
      if (this.#ready && (fullDue || this.#pending)) {
        // Respect minSyncPeriod between sync starts (after a failure, the backoff).
        const gap = this.#failures > 0
          ? Math.min(this.#opts.backoffMs * 2 ** (this.#failures - 1), this.#opts.maxBackoffMs)
          : this.#opts.minSyncPeriodMs;
        const wait = this.#lastSyncStart + gap - now;
        if (wait > 0) {
          await clock.sleep(wait, this.#stop.signal);
          continue;
        }
        const full = this.#wantFull || fullDue;
        this.#pending = false;
        this.#wantFull = false;
        this.#lastSyncStart = clock.now();
        this.syncs++;
        let ok = false;
        try {
          ok = (await this.#opts.sync({ full })).ok;
        } catch {
          // sync() reports its own errors; a throw counts as a failure.
          ok = false;
        }
        if (ok) {
          this.#failures = 0;
          if (full) this.#lastFull = this.#lastSyncStart;
        } else {
          this.#failures++;
          this.#pending = true;
          this.#wantFull = true;
        }
        continue;
      }
      // Idle: until a change, or the next periodic full resync.
      const untilFull = this.#ready ? this.#lastFull + this.#opts.syncPeriodMs - now : Infinity;
      await this.#waitForWake(Number.isFinite(untilFull) ? Math.max(untilFull, 0) : 3_600_000);
    }
  }
}
