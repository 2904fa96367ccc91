import { deepEqual, equal } from "node:assert/strict";
import { FakeClock } from "./clock.ts";
import { SyncLoop, type SyncRequest } from "./sync_loop.ts";

function loop(opts: { fail?: () => boolean } = {}) {
  const clock = new FakeClock();
  const calls: Array<{ at: number } & SyncRequest> = [];
  const l = new SyncLoop({
    clock,
    minSyncPeriodMs: 1000,
    syncPeriodMs: 30_000,
    backoffMs: 1000,
    maxBackoffMs: 8000,
    sync: (req) => {
      calls.push({ at: clock.now(), ...req });
      return Promise.resolve({ ok: !(opts.fail?.() ?? false) });
    },
  });
  l.start();
  return { clock, calls, l };
}

Deno.test("SyncLoop does not sync before the sources are ready, then starts with a full sync", async () => {
  const { clock, calls, l } = loop();
  l.request();
  await clock.advance(5000);
  equal(calls.length, 0);
  l.markReady();
  await clock.advance(1);
  deepEqual(calls, [{ at: 5000, full: true }]);
  await l.stop();
});

Deno.test("SyncLoop coalesces changes: at most one sync per minSyncPeriod", async () => {
  const { clock, calls, l } = loop();
  l.markReady();
  await clock.advance(1);
  for (let i = 0; i < 50; i++) {
    l.request();
    await clock.advance(40);
  }
  // 2 s of changes every 40 ms: the first sync, then one per second.
  deepEqual(calls.map((c) => c.at), [0, 1000, 2000]);
  deepEqual(calls.map((c) => c.full), [true, false, false]);
  await l.stop();
});

Deno.test("SyncLoop runs a full resync every syncPeriod when idle", async () => {
  const { clock, calls, l } = loop();
  l.markReady();
  await clock.advance(65_000);
  deepEqual(calls.map((c) => [c.at, c.full]), [[0, true], [30_000, true], [60_000, true]]);
  await l.stop();
});

Deno.test("SyncLoop retries a failed sync as a full sync with exponential backoff", async () => {
  let failuresLeft = 4;
  const { clock, calls, l } = loop({ fail: () => failuresLeft-- > 0 });
  l.markReady();
  await clock.advance(20_000);
  // Fails at 0, 1, 3, 7 (backoff 1, 2, 4 s), succeeds at 15 (backoff 8 s).
  deepEqual(calls.map((c) => c.at), [0, 1000, 3000, 7000, 15000]);
  equal(calls.every((c) => c.full), true);
  equal(l.failures, 0);
  await l.stop();
});

Deno.test("SyncLoop.stop() ends the loop", async () => {
  const { clock, calls, l } = loop();
  l.markReady();
  await clock.advance(1);
  await l.stop();
  l.request();
  await clock.advance(60_000);
  equal(calls.length, 1);
});
