/**
 * kube-proxy's health model (pkg/proxy/healthcheck/proxier_health.go): the
 * proxy is healthy while starting, and whenever no queued update has waited
 * longer than the health timeout (2 x syncPeriod) without being synced. The
 * node is "eligible" unless it is being deleted or drained for scale-down,
 * which /healthz (not /livez) reports so load balancers stop sending traffic.
 */
export interface HealthStatus {
  healthy: boolean;
  lastUpdated: string;
  currentTime: string;
  nodeEligible: boolean;
}

export class ProxyHealth {
  #timeoutMs: number;
  #now: () => number;
  #lastUpdated = 0;
  #oldestQueued: number | undefined;
  nodeEligible = true;

  constructor(timeoutMs: number, now: () => number = Date.now) {
    this.#timeoutMs = timeoutMs;
    this.#now = now;
  }

  set timeoutMs(ms: number) {
    this.#timeoutMs = ms;
  }

  /** A change is waiting for a sync. */
  queued(): void {
    this.#oldestQueued ??= this.#now();
  }

  /** A sync programmed everything queued before it started. */
  updated(syncStartedAt: number): void {
    this.#lastUpdated = this.#now();
    if (this.#oldestQueued !== undefined && this.#oldestQueued <= syncStartedAt) {
      this.#oldestQueued = undefined;
    }
  }

  status(): HealthStatus {
    const now = this.#now();
    const healthy = this.#oldestQueued === undefined || now - this.#oldestQueued < this.#timeoutMs;
    return {
      healthy,
      lastUpdated: new Date(this.#lastUpdated).toISOString(),
      currentTime: new Date(now).toISOString(),
      nodeEligible: this.nodeEligible,
    };
  }
}
