import { deepEqual, match, ok } from "node:assert/strict";
import { type GuestBench, guestBenchProblems } from "./ipvs_bench.ts";

function good(): GuestBench {
  return {
    services: 1000,
    virtualServices: 1100,
    full: { ok: true, full: true, ms: 9000, planMs: 40, applyMs: 8000, verifyMs: 900 },
    resync: { ok: true, full: true, ms: 3000 },
    listMs: 200,
    deltaMs: [30, 31],
    deltaParts: [
      { planMs: 1, applyMs: 20, verifyMs: 9 },
      { planMs: 1, applyMs: 21, verifyMs: 9 },
    ],
    perLine: { lines: 100, oneEachMs: 900, perLineErrors: [], restoreMs: 20, restoreErrors: [] },
  };
}

const WANT = { services: 1000, deltas: 2 };

Deno.test("guestBenchProblems() accepts a run where every step succeeded", () => {
  deepEqual(guestBenchProblems(good(), WANT), []);
});

Deno.test("guestBenchProblems() refuses a failed resync, with its error", () => {
  const g = good();
  g.resync = { ok: false, full: true, ms: 12, error: "ipvsadm -R refused line 3" };
  const problems = guestBenchProblems(g, WANT);
  deepEqual(problems, ["the full resync failed: ipvsadm -R refused line 3"]);
});

Deno.test("guestBenchProblems() refuses a failed or non-full first sync", () => {
  const failed = good();
  failed.full = { ...failed.full, ok: false, error: "nft: No such file" };
  match(guestBenchProblems(failed, WANT).join(), /the full sync failed: nft: No such file/);
  const delta = good();
  delta.full = { ...delta.full, full: false };
  match(guestBenchProblems(delta, WANT).join(), /was not a full sync/);
  const resyncDelta = good();
  resyncDelta.resync = { ...resyncDelta.resync, full: false };
  match(guestBenchProblems(resyncDelta, WANT).join(), /the resync was not a full sync/);
});

Deno.test("guestBenchProblems() refuses failed ipvsadm commands, missing deltas and non-times", () => {
  const g = good();
  g.perLine.perLineErrors = ["ipvsadm -A -t 10.200.0.1:80 -s rr: exit status 2: Memory"];
  g.perLine.restoreErrors = ["ipvsadm -R left 99 virtual services, not 100"];
  g.deltaMs = [30];
  g.listMs = Number.NaN;
  g.virtualServices = 3;
  const problems = guestBenchProblems(g, WANT);
  ok(problems.some((p) => p.startsWith("one ipvsadm per change: ipvsadm -A")), problems.join());
  ok(problems.some((p) => p.includes("left 99 virtual services")), problems.join());
  ok(problems.some((p) => p === "1 one-service deltas timed, not 2"), problems.join());
  ok(problems.some((p) => p === "ipvsadm -Ln: NaN is not a time"), problems.join());
  ok(problems.some((p) => p.includes("3 virtual services")), problems.join());
});
