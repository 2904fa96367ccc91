/**
 * Can this node run IPVS mode? The tools (ipvsadm, ip), the ip_vs module, and
 * the configured scheduler's module. The scheduler is tested the way
 * kube-proxy's CanUseIPVSProxier does: by adding a throwaway virtual service
 * with it (the kernel loads ip_vs_<scheduler> on demand, and refuses the
 * service if it cannot) and deleting it again. Its address, 0.0.0.0, is
 * never a packet's destination, so it carries no traffic while it exists.
 */
import type { Runner } from "./process.ts";

export interface IPVSPreflightResult {
  /** IPVS mode cannot work: fall back to nftables mode, or refuse. */
  errors: string[];
}

/** kube-proxy's probe service. */
export const PROBE_SERVICE = ["-t", "0.0.0.0:20000"] as const;

function firstLine(text: string, fallback: string): string {
  return text.trim().split("\n").find((l) => l.trim() !== "")?.trim() ?? fallback;
}

async function tryRun(runner: Runner, argv: string[]): Promise<{ code: number; stderr: string }> {
  try {
    return await runner.run(argv);
  } catch (e) {
    return { code: 127, stderr: (e as Error).message };
  }
}

export async function ipvsPreflight(
  runner: Runner,
  scheduler: string,
): Promise<IPVSPreflightResult> {
  const errors: string[] = [];
  // `ipvsadm -Ln` loads ip_vs itself (through modprobe) when it is missing.
  const list = await tryRun(runner, ["ipvsadm", "-Ln"]);
  if (list.code === 127) {
    errors.push(
      "ipvsadm is not installed (Debian/Ubuntu: apt-get install ipvsadm): kpx programs IPVS with it",
    );
    return { errors };
  }
  if (list.code !== 0) {
    errors.push(
      `the kernel has no IPVS (module ip_vs): ipvsadm -Ln: ${
        firstLine(list.stderr, `exit status ${list.code}`)
      }`,
    );
    return { errors };
  }
  const ip = await tryRun(runner, ["ip", "-V"]);
  if (ip.code !== 0) {
    errors.push(
      "ip is not installed (Debian/Ubuntu: apt-get install iproute2): kpx manages kube-ipvs0 with it",
    );
  }
  const probe = ["ipvsadm", "-A", ...PROBE_SERVICE, "-s", scheduler];
  let add = await tryRun(runner, probe);
  if (add.code !== 0 && /exists/i.test(add.stderr)) {
    // Left by a probe that was interrupted: replace it.
    await tryRun(runner, ["ipvsadm", "-D", ...PROBE_SERVICE]);
    add = await tryRun(runner, probe);
  }
  if (add.code !== 0) {
    errors.push(
      `the kernel cannot use IPVS scheduler ${scheduler} (module ip_vs_${scheduler}): ${
        firstLine(add.stderr, `exit status ${add.code}`)
      }`,
    );
    return { errors };
  }
  const del = await tryRun(runner, ["ipvsadm", "-D", ...PROBE_SERVICE]);
  if (del.code !== 0) {
    errors.push(
      `Cannot delete the probe virtual service ${PROBE_SERVICE.join(" ")}: ${
        firstLine(del.stderr, `exit status ${del.code}`)
      }`,
    );
  }
  return { errors };
}
