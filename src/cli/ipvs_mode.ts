/**
 * `kpx run` in IPVS mode: check that the node can do it, prepare it (sysctls,
 * IPVS timeouts), or fall back to nftables mode as kube-proxy did when IPVS
 * was missing; `--ipvs-fallback=false` refuses to start instead.
 */
import {
  type DummyLink,
  IpLink,
  type Ipvs,
  IpvsadmCli,
  ipvsPreflight,
  prepareIPVSHost,
  type Runner,
  runnerSysctl,
} from "../apply/mod.ts";
import type { Config } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";

export interface IPVSMode {
  /** The configuration to run with: mode "nftables" after a fallback. */
  config: Config;
  /** IPVS access for the daemon; absent after a fallback. */
  ipvs?: { ipvs: Ipvs; link: DummyLink };
}

export async function startIPVSMode(
  config: Config,
  runner: Runner,
  log: Logger,
  opts: { fallback: boolean },
): Promise<IPVSMode> {
  const checks = await ipvsPreflight(runner, config.ipvs.scheduler);
  if (checks.errors.length > 0) {
    const why = checks.errors.join("; ");
    if (!opts.fallback) {
      throw new Error(
        `Cannot run in ipvs mode: ${why} (--ipvs-fallback=false: not falling back to nftables mode)`,
      );
    }
    log.warn(
      "IPVS mode is not available on this node; running in nftables mode instead (--ipvs-fallback=false refuses to start)",
      {
        reason: why,
      },
    );
    return { config: { ...config, mode: "nftables" } };
  }
  const ipvs = new IpvsadmCli(runner);
  const sysctl = runnerSysctl(runner);
  for (
    const ch of await prepareIPVSHost(config.ipvs, {
      ipvs,
      kernelRelease: Deno.osRelease(),
      sysctl,
    })
  ) {
    log.info("Set sysctl", { sysctl: ch.key, from: ch.from, to: ch.to });
  }
  return { config, ipvs: { ipvs, link: new IpLink(runner) } };
}
