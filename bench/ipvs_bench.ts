/**
 * IPVS mode's apply times (issue 6), inside the IPVS test VM (Debian's
 * kernel under qemu, software emulation: absolute figures are several times
 * what a real node takes; compare them with each other). kpx's IPVS applier
 * runs in the guest against the real IPVS table, kube-ipvs0 and nftables:
 * a full sync of 1k services x 10 endpoints (every 10th a NodePort) into an
 * empty node, a full resync with nothing to change, and one-service deltas
 * (2 of 10 endpoints replaced), plus one ipvsadm per change against one
 * ipvsadm -R for 100 new virtual services. Skipped, with a note, on a host
 * that cannot run the VM. A run where any step failed fails the benchmark
 * (guestBenchProblems): nothing of it is recorded.
 */
import { ensureVmImage, runInVm, vmPrerequisites } from "../test/e2e/ipvs_vm.ts";
import { bundle } from "../test/e2e/_ipvs_mode_vm.ts";
import type { BenchReport } from "./report.ts";

/** What the guest prints (test/e2e/_ipvs_mode_guest.ts, scenario bench). */
export interface GuestBench {
  services: number;
  virtualServices: number;
  full: {
    ok: boolean;
    full: boolean;
    ms: number;
    planMs: number;
    applyMs: number;
    verifyMs: number;
    error?: string;
  };
  resync: { ok: boolean; full: boolean; ms: number; error?: string };
  listMs: number;
  deltaMs: number[];
  deltaParts: Array<{ planMs: number; applyMs: number; verifyMs: number }>;
  perLine: {
    lines: number;
    oneEachMs: number;
    perLineErrors: string[];
    restoreMs: number;
    restoreErrors: string[];
  };
}

/**
 * Why a guest run must not be recorded (empty: it may): a sync that failed
 * or was not what it claims to time, a command that failed, a figure that is
 * not a time. A failed step is often fast, so its figure would look good.
 */
export function guestBenchProblems(
  g: GuestBench,
  want: { services: number; deltas: number },
): string[] {
  const problems: string[] = [];
  if (g.services !== want.services) {
    problems.push(`the guest planned ${g.services} services, not ${want.services}`);
  }
  if (!g.full.ok) problems.push(`the full sync failed: ${g.full.error ?? "no error given"}`);
  else if (!g.full.full) problems.push("the first sync was not a full sync");
  if (!g.resync.ok) problems.push(`the full resync failed: ${g.resync.error ?? "no error given"}`);
  else if (!g.resync.full) problems.push("the resync was not a full sync");
  if (g.virtualServices < want.services) {
    problems.push(`${g.virtualServices} virtual services after the syncs, fewer than the services`);
  }
  if (g.deltaMs.length !== want.deltas || g.deltaParts.length !== want.deltas) {
    problems.push(`${g.deltaMs.length} one-service deltas timed, not ${want.deltas}`);
  }
  for (const e of g.perLine.perLineErrors) problems.push(`one ipvsadm per change: ${e}`);
  for (const e of g.perLine.restoreErrors) problems.push(`ipvsadm -R: ${e}`);
  const times: Array<[string, number]> = [
    ["full sync", g.full.ms],
    ["full sync planning", g.full.planMs],
    ["resync", g.resync.ms],
    ["ipvsadm -Ln", g.listMs],
    ["one ipvsadm per change", g.perLine.oneEachMs],
    ["ipvsadm -R", g.perLine.restoreMs],
    ...g.deltaMs.map((ms, i): [string, number] => [`delta ${i}`, ms]),
  ];
  for (const [what, ms] of times) {
    if (!Number.isFinite(ms) || ms < 0) problems.push(`${what}: ${ms} is not a time`);
  }
  return problems;
}

const SETUP = `for f in 0:stdin 1:stdout 2:stderr; do
  [ -e /dev/\${f#*:} ] || ln -s /proc/self/fd/\${f%%:*} /dev/\${f#*:}
done
ip link set lo up
# Endpoint addresses need a route, or IPVS refuses them as real servers.
ip link add pods type dummy; ip link set pods up
ip addr add 10.0.1.1/24 dev pods; ip route add 10.0.0.0/8 dev pods`;

export async function ipvsBench(report: BenchReport, opts: { quick: boolean }): Promise<void> {
  const missing = await vmPrerequisites({ deno: true });
  if (missing.length > 0) {
    console.warn(`ipvs bench: skipped; missing on this host: ${missing.join("; ")}`);
    return;
  }
  const image = await ensureVmImage({ deno: true });
  const guest = await bundle("test/e2e/_ipvs_mode_guest.ts");
  const services = 1000;
  const deltas = opts.quick ? 5 : 10;
  const results: GuestBench[] = [];
  for (let run = 0; run < (opts.quick ? 1 : 3); run++) {
    const r = await runInVm(image, {
      script: `${SETUP}\ndeno run -A guest.js bench ${services} ${deltas}`,
      files: { "guest.js": guest },
      deno: true,
      timeoutMs: 600_000,
    });
    if (r.exitCode !== 0) {
      throw new Error(
        `Cannot run the IPVS benchmark in the VM: exit ${r.exitCode}: ${r.stderr.slice(-2000)}`,
      );
    }
    let g: GuestBench;
    try {
      g = JSON.parse(r.stdout) as GuestBench;
    } catch (e) {
      throw new Error(
        `Cannot read the IPVS benchmark's result from the VM: ${r.stdout.slice(-500)}`,
        { cause: e },
      );
    }
    const problems = guestBenchProblems(g, { services, deltas });
    if (problems.length > 0) {
      throw new Error(`Cannot record the IPVS benchmark (run ${run + 1}): ${problems.join("; ")}`);
    }
    results.push(g);
  }
  const note = `in the qemu VM (TCG); ${results[0]!.virtualServices} virtual services`;
  report.add({
    suite: "ipvs",
    name: `full IPVS sync into an empty node, ${
      services / 1000
    }k services x 10 endpoints (plan, ipvsadm -R, nft, kube-ipvs0, read-back)`,
    unit: "s",
    values: results.map((g) => g.full.ms / 1000),
    note,
  });
  report.add({
    suite: "ipvs",
    name: "  of which planning",
    unit: "s",
    values: results.map((g) => g.full.planMs / 1000),
  });
  report.add({
    suite: "ipvs",
    name: `full IPVS resync with nothing to change, ${services / 1000}k services`,
    unit: "s",
    values: results.map((g) => g.resync.ms / 1000),
  });
  report.add({
    suite: "ipvs",
    name: "ipvsadm -Ln of the whole table",
    unit: "ms",
    values: results.map((g) => g.listMs),
  });
  report.add({
    suite: "ipvs",
    name: `one-service IPVS delta on ${services / 1000}k services (read, ipvsadm -R, nft, verify)`,
    unit: "ms",
    values: results.flatMap((g) => g.deltaMs),
    note: "one ipvsadm -Ln per touched virtual service before and after",
  });
  report.add({
    suite: "ipvs",
    name: "100 new virtual services: one ipvsadm per change",
    unit: "ms",
    values: results.map((g) => g.perLine.oneEachMs),
  });
  report.add({
    suite: "ipvs",
    name: "100 new virtual services: one ipvsadm -R",
    unit: "ms",
    values: results.map((g) => g.perLine.restoreMs),
  });
}
