/**
 * IPVS mode's apply times (issue 6), inside the IPVS test VM (Debian's
 * kernel under qemu, software emulation: absolute figures are several times
 * what a real node takes; compare them with each other). kpx's IPVS applier
 * runs in the guest against the real IPVS table, kube-ipvs0 and nftables:
 * a full sync of 1k services x 10 endpoints (every 10th a NodePort) into an
 * empty node, a full resync with nothing to change, and one-service deltas
 * (2 of 10 endpoints replaced), plus one ipvsadm per change against one
 * ipvsadm -R for 100 new virtual services. Skipped, with a note, on a host
 * that cannot run the VM.
 */
import { ensureVmImage, runInVm, vmPrerequisites } from "../test/e2e/ipvs_vm.ts";
import { bundle } from "../test/e2e/_ipvs_mode_vm.ts";
import type { BenchReport } from "./report.ts";

interface GuestBench {
  services: number;
  virtualServices: number;
  full: {
    ok: boolean;
    ms: number;
    planMs: number;
    applyMs: number;
    verifyMs: number;
    error?: string;
  };
  resync: { ok: boolean; ms: number };
  listMs: number;
  deltaMs: number[];
  deltaParts: Array<{ planMs: number; applyMs: number; verifyMs: number }>;
  perLine: { lines: number; oneEachMs: number; restoreMs: number };
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
    const g = JSON.parse(r.stdout) as GuestBench;
    if (!g.full.ok) {
      throw new Error(`Cannot run the IPVS benchmark: the full sync failed: ${g.full.error}`);
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
