/**
 * `kpx run`'s daemon: a source feeds the cluster state, the sync loop decides
 * when, the applier programs the kernel, the servers report. Stopping leaves
 * the rules in place (traffic keeps flowing); `kpx cleanup` removes them.
 */
import {
  Applier,
  type DummyLink,
  type Ipvs,
  IPVSApplier,
  type Nft,
  type Runner,
} from "../apply/mod.ts";
import { type Config, planContext } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { type KpxMetrics, kpxMetrics } from "../metrics/mod.ts";
import type { Planner } from "../planner/mod.ts";
import {
  healthzServer,
  type HttpServer,
  metricsServer,
  ProxyHealth,
  type ServiceHealth,
  ServiceHealthServers,
} from "../serve/mod.ts";
import { loadApiSource, ManifestDirSource, type SourceHandlers } from "../source/mod.ts";
import { ClusterState, type Endpoint } from "../state/mod.ts";
import { type Clock, realClock } from "./clock.ts";
import { Ingest } from "./ingest.ts";
import { SyncLoop, type SyncRequest, type SyncResult } from "./sync_loop.ts";

export interface DaemonOptions {
  config: Config;
  nodeName: string;
  /** Follow this directory of manifests instead of the API. */
  manifests?: string;
  planner: Planner;
  nft: Nft;
  /** Runs conntrack; absent: no conntrack cleanup. */
  conntrack?: Runner;
  /** IPVS mode (config.mode "ipvs"): the IPVS table and the kube-ipvs0 interface. */
  ipvs?: { ipvs: Ipvs; link: DummyLink };
  log: Logger;
  clock?: Clock;
  metrics?: KpxMetrics;
}

interface Source {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class Daemon {
  readonly metrics: KpxMetrics;
  readonly state: ClusterState;
  readonly health: ProxyHealth;
  #opts: DaemonOptions;
  #config: Config;
  #log: Logger;
  #clock: Clock;
  #ingest: Ingest;
  #applier: Pick<Applier, "init" | "sync">;
  #loop: SyncLoop;
  #source: Source | undefined;
  #servers: HttpServer[] = [];
  #serviceHealth: ServiceHealthServers;
  /** Resolves after each completed sync (tests wait on it). */
  #syncWaiters: Array<() => void> = [];
  #ready = false;
  lastSync: { ok: boolean; full: boolean; generation: number; at: number } | undefined;

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.#config = opts.config;
    this.#log = opts.log;
    this.#clock = opts.clock ?? realClock;
    this.metrics = opts.metrics ?? kpxMetrics();
    this.state = new ClusterState(opts.nodeName);
    this.health = new ProxyHealth(2 * this.#config.syncPeriodMs, () => this.#clock.now());
    this.#ingest = new Ingest(this.state, opts.log, this.metrics, () => this.#clock.now());
    const applier = {
      nft: opts.nft,
      planner: opts.planner,
      log: opts.log,
      metrics: this.metrics,
      ...(opts.conntrack ? { conntrack: opts.conntrack } : {}),
    };
    if (this.#config.mode === "ipvs" && !opts.ipvs) {
      throw new TypeError("Cannot start in ipvs mode: no IPVS access given");
    }
    this.#applier = this.#config.mode === "ipvs" && opts.ipvs
      ? new IPVSApplier({ ...applier, ...opts.ipvs, excludeCIDRs: this.#config.ipvs.excludeCIDRs })
      : new Applier(applier);
    this.#loop = this.#newLoop();
    this.#ingest.onChange = () => {
      this.health.queued();
      this.metrics.lastQueued.set(this.#clock.now() / 1000);
      this.#loop.request();
    };
    this.#serviceHealth = new ServiceHealthServers({
      proxyHealthy: () => this.health.status().healthy,
      onError: (e) => this.#log.error("Health check server failed", { error: e }),
    });
  }

  #newLoop(): SyncLoop {
    return new SyncLoop({
      clock: this.#clock,
      minSyncPeriodMs: this.#config.minSyncPeriodMs,
      syncPeriodMs: this.#config.syncPeriodMs,
      maxBackoffMs: Math.max(this.#config.syncPeriodMs, 1000),
      sync: (req) => this.#sync(req),
    });
  }

  get config(): Config {
    return this.#config;
  }

  async start(): Promise<void> {
    const c = this.#config;
    const onError = (e: Error) => this.#log.error("HTTP server error", { error: e });
    if (c.healthzBindAddress) {
      this.#servers.push(healthzServer(c.healthzBindAddress, this.health, this.metrics, onError));
    }
    if (c.metricsBindAddress) {
      this.#servers.push(metricsServer(c.metricsBindAddress, this.metrics, c.mode, onError));
    }
    const table = await this.#applier.init();
    this.#log.info("Starting", {
      node: this.#opts.nodeName,
      mode: c.mode,
      source: this.#opts.manifests ? `manifests ${this.#opts.manifests}` : "api",
      existingRules: table.exists,
    });
    const handlers: SourceHandlers = {
      event: (kind, type, o) => this.#ingest.event(kind, type, o),
      synced: () => {
        this.#log.info("Sources synced: programming rules", {
          services: this.state.serviceCount,
          slices: this.state.sliceCount,
        });
        this.#ready = true;
        this.#loop.markReady();
      },
      error: (e) => {
        this.metrics.sourceErrors.inc({ source: this.#opts.manifests ? "manifests" : "api" });
        this.#log.error("Source error", { error: e });
      },
    };
    this.#source = this.#opts.manifests
      ? new ManifestDirSource({ dir: this.#opts.manifests, log: this.#log, handlers })
      : new (await loadApiSource()).ApiSource({
        ...(c.kubeconfig ? { kubeconfig: c.kubeconfig } : {}),
        ...(c.master ? { master: c.master } : {}),
        nodeName: this.#opts.nodeName,
        log: this.#log,
        handlers,
      });
    this.#loop.start();
    await this.#source.start();
  }

  /** Replaces the configuration (SIGHUP); the next sync is a full one if it changed the rules. */
  reload(next: Config): void {
    const restart = ([
      "mode",
      "kubeconfig",
      "master",
      "hostnameOverride",
      "healthzBindAddress",
      "metricsBindAddress",
    ] as const)
      .filter((k) => next[k] !== this.#config[k]);
    if (restart.length) {
      this.#log.warn("These settings take effect after a restart", { settings: restart.join(",") });
    }
    const periods = next.syncPeriodMs !== this.#config.syncPeriodMs ||
      next.minSyncPeriodMs !== this.#config.minSyncPeriodMs;
    if (next.logFormat !== this.#config.logFormat || next.verbosity !== this.#config.verbosity) {
      // The logger is shared with the sources and the applier: they all follow.
      this.#log.configure({ format: next.logFormat, verbosity: next.verbosity });
      this.#log.info("Logging changed", { format: next.logFormat, verbosity: next.verbosity });
    }
    this.#config = {
      ...next,
      ...Object.fromEntries(restart.map((k) => [k, this.#config[k]])),
    } as Config;
    this.health.timeoutMs = 2 * this.#config.syncPeriodMs;
    if (periods) {
      const old = this.#loop;
      this.#loop = this.#newLoop();
      old.stop().then(() => {
        if (this.#ready) this.#loop.markReady();
        this.#loop.start();
      });
    }
    this.#loop.request({ full: true });
    this.#log.info("Configuration reloaded");
  }

  async #sync(req: SyncRequest): Promise<SyncResult> {
    const started = this.#clock.now();
    const pending = this.#ingest.takePending();
    const ctx = planContext(this.#config, this.#opts.nodeName, this.#ingest.node);
    const { notes: _notes, ...context } = ctx;
    const out = await this.#applier.sync(this.state, context, { full: req.full });
    const done = this.#clock.now();
    this.lastSync = { ok: out.ok, full: out.full, generation: out.generation, at: done };
    if (!out.ok) {
      // The changes were not programmed: pending again, for the retry.
      this.#ingest.restorePending(pending);
      this.#log.error("Sync failed; the rules in the kernel are the last good ones", {
        full: out.full,
        restored: out.restored,
        error: out.error,
      });
      this.#wakeWaiters();
      return { ok: false };
    }
    const seconds = (done - started) / 1000;
    this.metrics.syncDuration.observe(seconds);
    (out.full ? this.metrics.syncFullDuration : this.metrics.syncPartialDuration).observe(seconds);
    this.metrics.lastSync.set(done / 1000);
    this.metrics.services.set(this.state.serviceCount);
    for (const p of pending.values()) {
      this.metrics.changeToKernel.observe((done - p.receivedAt) / 1000);
      // As kube-proxy: only changes the EndpointSlice controller timestamped.
      if (p.triggeredAt !== undefined) {
        this.metrics.networkProgramming.observe((done - p.triggeredAt) / 1000);
      }
    }
    this.health.updated(started);
    this.health.nodeEligible = !(this.#ingest.node?.deleting ?? false);
    await this.#serviceHealth.sync(this.#healthServices());
    this.#log.info("Synced", {
      full: out.full,
      generation: out.generation,
      services: out.services,
      bytes: out.bytes,
      planMs: Math.round(out.planMs * 10) / 10,
      applyMs: Math.round(out.applyMs * 10) / 10,
      verifyMs: Math.round(out.verifyMs * 10) / 10,
    }, out.full ? 1 : 2);
    this.#wakeWaiters();
    return { ok: true };
  }

  /**
   * eTP=Local LoadBalancers with a health check node port, and their local
   * ready endpoints; and, as kube-proxy's no_local_endpoints gauge, the
   * service ports with a Local traffic policy that have endpoints but none
   * on this node (their traffic of that kind is dropped here). Only services
   * with a Local policy are joined with their endpoints.
   */
  #healthServices(): ServiceHealth[] {
    const out: ServiceHealth[] = [];
    const node = this.#opts.nodeName;
    let internal = 0;
    let external = 0;
    // kube-proxy's usable endpoints: ready, else serving and terminating.
    const usable = (e: Endpoint) => e.ready || (e.serving && e.terminating);
    const isLocal = (e: Endpoint) => e.nodeName !== "" && e.nodeName === node;
    for (const id of this.state.serviceIds()) {
      const spec = this.state.spec(id);
      if (!spec) continue;
      if (!spec.internalTrafficLocal && !spec.externalTrafficLocal && !spec.healthCheckNodePort) {
        continue;
      }
      const svc = this.state.service(id);
      const local = new Set<string>();
      for (const p of svc?.ports ?? []) {
        for (const e of p.endpoints) if (e.ready && isLocal(e)) local.add(e.address);
        if (!p.endpoints.some(usable) || p.endpoints.some((e) => usable(e) && isLocal(e))) continue;
        if (spec.internalTrafficLocal) internal++;
        if (spec.externalTrafficLocal) external++;
      }
      if (spec.healthCheckNodePort === 0) continue;
      out.push({
        namespace: spec.namespace,
        name: spec.name,
        port: spec.healthCheckNodePort,
        localEndpoints: local.size,
      });
    }
    this.metrics.noLocalEndpoints.set(internal, { traffic_policy: "internal" });
    this.metrics.noLocalEndpoints.set(external, { traffic_policy: "external" });
    return out;
  }

  #wakeWaiters(): void {
    const w = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const f of w) f();
  }

  /** Resolves after the next sync completes (successful or not). */
  nextSync(): Promise<void> {
    return new Promise((r) => this.#syncWaiters.push(r));
  }

  /** Where the healthz and metrics servers listen (ports resolved when 0 was asked). */
  get addresses(): Array<{ hostname: string; port: number }> {
    return this.#servers.map((s) => s.addr);
  }

  get healthCheckPorts(): number[] {
    return this.#serviceHealth.ports;
  }

  /** Stops watching and serving; the rules stay in the kernel. */
  async stop(): Promise<void> {
    await this.#source?.stop();
    await this.#loop.stop();
    await this.#serviceHealth.stop();
    for (const s of this.#servers) await s.stop();
    this.#log.info("Stopped; kpx's rules stay in place (kpx cleanup removes them)");
  }
}
