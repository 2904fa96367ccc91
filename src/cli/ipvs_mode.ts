/**
 * `kpx run` in IPVS mode: check that the node can do it (ipvsadm, ip, the
 * ip_vs module, the scheduler), prepare it (sysctls, IPVS timeouts), or, when
 * it cannot, either run in nftables mode instead or refuse to start.
 *
 * Which of the two (issue 6: "fall back to nftables mode, or refuse if the
 * config insists"): by default kpx falls back, with a warning naming what is
 * missing, as kube-proxy fell back to iptables mode. IPVS mode is always
 * chosen explicitly, so an explicit mode cannot be what "insists" means; the
 * operator insists with `--ipvs-fallback=false`, and kpx then refuses to start.
 */
import {
  type DummyLink,
  IpLink,
  type Ipvs,
  IpvsadmCli,
  IPVSHostError,
  ipvsPreflight,
  prepareIPVSHost,
  type Runner,
  runnerSysctl,
  type SysctlIO,
} from "../apply/mod.ts";
import type { Config } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";

export interface IPVSMode {
  /** The configuration to run with: mode "nftables" after a fallback. */
  config: Config;
  /** IPVS access for the daemon; absent after a fallback. */
  ipvs?: { ipvs: Ipvs; link: DummyLink };
}

/** kpx refuses to start in IPVS mode: `reasons` say what the node lacks. */
export class IPVSUnavailableError extends Error {
  override name = "IPVSUnavailableError";
  readonly reasons: readonly string[];
  /** The sysctl (or "ipvsadm --set") that could not be set, when that was the reason. */
  readonly setting: string | undefined;
  constructor(
    message: string,
    reasons: readonly string[],
    options: ErrorOptions & { setting?: string } = {},
  ) {
    super(message, options);
    this.reasons = reasons;
    this.setting = options.setting;
  }
}

/** Where the decision to fall back or refuse came from, for the messages. */
export type FallbackChoice =
  | { fallback: true; why: "flag" | "default" }
  | { fallback: false; why: "flag" };

/**
 * Whether IPVS mode may fall back to nftables mode (pure): yes unless
 * `--ipvs-fallback=false` insists on IPVS.
 */
export function ipvsFallbackChoice(flag: boolean | undefined): FallbackChoice {
  if (flag === false) return { fallback: false, why: "flag" };
  return { fallback: true, why: flag === true ? "flag" : "default" };
}

function refusalHint(_choice: FallbackChoice): string {
  return "--ipvs-fallback=false: not falling back to nftables mode";
}

export interface StartIPVSOptions {
  /** The `--ipvs-fallback` flag; undefined when not given. */
  fallback?: boolean | undefined;
  /** Test seams: the kernel release (default Deno.osRelease()) and sysctl access. */
  kernelRelease?: string;
  sysctl?: SysctlIO;
  ipvs?: Ipvs;
}

export async function startIPVSMode(
  config: Config,
  runner: Runner,
  log: Logger,
  opts: StartIPVSOptions = {},
): Promise<IPVSMode> {
  const choice = ipvsFallbackChoice(opts.fallback);
  const unavailable = (
    reasons: string[],
    options: ErrorOptions & { setting?: string } = {},
  ): IPVSMode => {
    const why = reasons.join("; ");
    if (!choice.fallback) {
      throw new IPVSUnavailableError(
        `Cannot run in ipvs mode: ${why} (${refusalHint(choice)})`,
        reasons,
        options,
      );
    }
    log.warn(
      "IPVS mode is not available on this node; running in nftables mode instead (--ipvs-fallback=false refuses to start)",
      { reason: why },
    );
    return { config: { ...config, mode: "nftables" } };
  };

  const checks = await ipvsPreflight(runner, config.ipvs.scheduler);
  if (checks.errors.length > 0) return unavailable(checks.errors);

  const ipvs = opts.ipvs ?? new IpvsadmCli(runner);
  let changes;
  try {
    changes = await prepareIPVSHost(config.ipvs, {
      ipvs,
      kernelRelease: opts.kernelRelease ?? Deno.osRelease(),
      sysctl: opts.sysctl ?? runnerSysctl(runner),
    });
  } catch (e) {
    if (!(e instanceof IPVSHostError)) throw e;
    for (const ch of e.applied) {
      log.info("Set sysctl", { sysctl: ch.key, from: ch.from, to: ch.to });
    }
    return unavailable([e.message], {
      cause: e,
      setting: e.setting,
    });
  }
  for (const ch of changes) {
    log.info("Set sysctl", { sysctl: ch.key, from: ch.from, to: ch.to });
  }
  return { config, ipvs: { ipvs, link: new IpLink(runner) } };
}
