/**
 * An endpoint removed under load, with real packets: a client pod keeps opening new TCP
 * connections (and sending UDP datagrams) to a ClusterIP with three endpoints while kpx syncs
 * the service without one of them. The removed pod stays up and keeps answering, so traffic
 * that still reached it would say so. Everything sent after the sync returned must be answered,
 * and never by the removed pod; what was sent before may still reach it.
 *
 * node0 with pod0a (the client), pod0b; node1 with pod1a, pod1b. Endpoints: pod0b, pod1a and
 * pod1b (the one removed).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import {
  type PodHandle,
  type ProbeRequest,
  type ProbeResult,
  shouldSkipKernelTests,
  Testbed,
} from "./mod.ts";
import {
  describeRequest,
  KpxCluster,
  pollUntil,
  type PortDef,
  serviceObjects,
  SourcePorts,
} from "./kpx_fixtures.ts";

const ignore = await shouldSkipKernelTests();

const WEB: readonly PortDef[] = [
  { protocol: "TCP", port: 80, targetPort: 8080 },
  { protocol: "UDP", port: 80, targetPort: 8080 },
];
const VIP = "10.96.0.50";
/** Probe processes running at once: one is nearly always mid-batch when the sync runs. */
const WORKERS = 2;
/** Bounds on the load, per step. */
const MAX_BATCHES = 40;
const LOAD_DEADLINE_MS = 20_000;
/** Batches wanted on each side of the sync. */
const BATCHES_BEFORE = 4;
const BATCHES_AFTER = 4;

/** One probe process's requests, with when it was started and when it returned. */
interface Batch {
  startedAt: number;
  endedAt: number;
  requests: ProbeRequest[];
  results: ProbeResult[];
}

/** Background load: WORKERS loops, each sending batch after batch, until stop() or a bound. */
class Load {
  readonly batches: Batch[] = [];
  #stopped = false;
  #failure: unknown = undefined;
  #done: Promise<void>;

  constructor(tb: Testbed, from: PodHandle, make: (worker: number) => ProbeRequest[]) {
    const deadline = performance.now() + LOAD_DEADLINE_MS;
    const worker = async (w: number) => {
      while (!this.#stopped && this.batches.length < MAX_BATCHES && performance.now() < deadline) {
        const requests = make(w);
        const startedAt = performance.now();
        const results = await tb.requestMany(from, requests, { concurrency: 4 });
        this.batches.push({ startedAt, endedAt: performance.now(), requests, results });
      }
    };
    // A worker's error stops the load and is rethrown by until() and stop().
    this.#done = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w))).then(
      () => {},
      (error) => {
        this.#stopped = true;
        this.#failure = error;
      },
    );
  }

  /** Batches started after `t` that have returned. */
  startedAfter(t: number): Batch[] {
    return this.batches.filter((b) => b.startedAt >= t);
  }

  /** Waits until `check` holds; fails if the load ends first or a worker failed. */
  async until(check: () => boolean, what: string): Promise<void> {
    const reached = await pollUntil(() => Promise.resolve(check() || this.#stopped), {
      timeoutMs: LOAD_DEADLINE_MS,
      intervalMs: 20,
    });
    if (this.#failure !== undefined) throw this.#failure;
    ok(reached && check(), `load: ${what} not reached (${this.batches.length} batches)`);
  }

  /** Stops the workers and waits for them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/** Each request and its result, in the order the batches returned. */
function pairs(batches: readonly Batch[]): { request: ProbeRequest; result: ProbeResult }[] {
  return batches.flatMap((b) =>
    b.requests.map((request, i) => ({ request, result: b.results[i]! }))
  );
}

Deno.test({
  name: "An endpoint removed under load gets no new connections once the sync returns",
  ignore,
  async fn(t) {
    await using tb = await Testbed.create({ nodes: 2, podsPerNode: 2 });
    const [client, pod0b, pod1a, victim] = tb.pods;
    ok(client && pod0b && pod1a && victim, "testbed pods");
    const kpx = await KpxCluster.start(tb);
    const web = (endpoints: PodHandle[]) =>
      serviceObjects(tb, { name: "web", clusterIPs: [VIP], ports: WEB }, endpoints);
    const all = [pod0b.name, pod1a.name, victim.name];
    const kept = [pod0b.name, pod1a.name];

    /**
     * Runs `make`'s load, removes the victim from the service once BATCHES_BEFORE batches have
     * returned, and goes on until BATCHES_AFTER batches started after the sync have returned.
     */
    const churn = async (make: (worker: number) => ProbeRequest[]) => {
      await kpx.sync(web([pod0b, pod1a, victim]), { clearConntrack: true });
      const load = new Load(tb, client, make);
      let syncStart = 0;
      let syncEnd = Infinity;
      try {
        await load.until(() => load.batches.length >= BATCHES_BEFORE, "batches before");
        syncStart = performance.now();
        const synced = await kpx.sync(web([pod0b, pod1a]), { clearConntrack: true });
        syncEnd = performance.now();
        equal(synced[0]?.full, false, "the removal is a delta, as in the daemon");
        await load.until(
          () => load.startedAfter(syncEnd).length >= BATCHES_AFTER,
          "batches after",
        );
      } finally {
        await load.stop();
      }
      const before = pairs(load.batches.filter((b) => b.endedAt <= syncStart));
      const during = load.batches.filter((b) => b.startedAt < syncEnd && b.endedAt > syncStart);
      const after = pairs(load.startedAfter(syncEnd));
      console.log(
        `    ${load.batches.length} batches, ${during.length} across the sync ` +
          `(${(syncEnd - syncStart).toFixed(0)} ms), ${after.length} requests after`,
      );
      ok(during.length > 0, "some batch was in flight while the sync ran");
      ok(
        before.some((p) => p.result.ok && p.result.pod === victim.name),
        `${victim.name} answered before the sync`,
      );
      for (const { request, result } of after) {
        const what: string = `after the sync: ${client.name} ${describeRequest(request)}`;
        ok(result.ok, `${what}: ${JSON.stringify(result)}`);
        ok(kept.includes(result.pod), `${what}: answered by ${result.pod}`);
      }
      // Both remaining endpoints still serve: ≥ 32 fresh picks after the sync (TCP: ≥ 64) miss
      // one by chance with probability ≤ 2^-31.
      deepEqual(
        [...new Set(after.map((p) => p.result.ok ? p.result.pod : ""))].sort(),
        kept,
        "after the sync",
      );
      return { before, during: pairs(during) };
    };

    await t.step("new TCP connections after the sync never reach the removed pod", async () => {
      // 16 connections per batch: BATCHES_AFTER batches give ≥ 64 connections after the sync,
      // all missing the removed pod by chance with probability (2/3)^64 ≈ 5e-12 were it kept.
      const { before, during } = await churn(() =>
        Array.from({ length: 16 }, () => ({ ip: VIP, port: 80, protocol: "tcp" as const }))
      );
      // TCP flows keep their conntrack entries: nothing fails, not even across the apply.
      for (const { request, result } of [...before, ...during]) {
        ok(result.ok, `${client.name} ${describeRequest(request)}: ${JSON.stringify(result)}`);
        ok(all.includes(result.pod), `answered by ${result.pod}`);
      }
    });

    await t.step(
      "UDP after the sync never reaches the removed pod, on new or ongoing flows",
      async () => {
        const fresh = new SourcePorts();
        // Ongoing flows: 24 fixed source ports per worker (below SourcePorts' range), sent on
        // again in every batch, so conntrack keeps each on its endpoint. Some of the 48 are
        // on the removed pod (all miss it with probability (2/3)^48 ≈ 4e-9); only kpx's
        // conntrack cleanup moves them.
        const ongoing = (w: number) => Array.from({ length: 24 }, (_, k) => 10_000 + 100 * w + k);
        const { before, during } = await churn((w) => [
          ...ongoing(w).map((sourcePort) => ({
            ip: VIP,
            port: 80,
            protocol: "udp" as const,
            sourcePort,
          })),
          ...Array.from({ length: 8 }, () => ({
            ip: VIP,
            port: 80,
            protocol: "udp" as const,
            sourcePort: fresh.next(),
          })),
        ]);
        ok(
          before.some((p) =>
            p.request.sourcePort! < 20_000 && p.result.ok && p.result.pod === victim.name
          ),
          `an ongoing flow was on ${victim.name} before the sync`,
        );
        for (const { request, result } of before) {
          ok(result.ok, `${client.name} ${describeRequest(request)}: ${JSON.stringify(result)}`);
        }
        // A datagram in flight while its entry is deleted may lose its reply (the reply then
        // matches no entry and is not un-DNATed): only batches across the sync may time out.
        for (const { request, result } of during) {
          ok(
            result.ok || result.failure === "timeout",
            `${client.name} ${describeRequest(request)}: ${JSON.stringify(result)}`,
          );
        }
      },
    );
  },
});
