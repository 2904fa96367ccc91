/** `kpx run`: the node proxy daemon. */
import { applyConntrackSysctls, NftCli, preflight, ProcessRunner } from "../apply/mod.ts";
import { loadConfig, resolveNodeName } from "../config/mod.ts";
import { Daemon } from "../daemon/mod.ts";
import { errorText, Logger } from "../log/mod.ts";
import { Planner } from "../planner/mod.ts";
import { type FlagSpec, parseArgs, UsageError } from "./args.ts";
import { CONFIG_FLAG, hostname, loadConfigFromArgs } from "./common.ts";
import { startIPVSMode } from "./ipvs_mode.ts";

export const RUN_FLAGS: Record<string, FlagSpec> = {
  ...CONFIG_FLAG,
  manifests: {
    type: "string",
    help: "follow Services/EndpointSlices/Node from this directory of manifests instead of the API",
  },
  "ipvs-fallback": {
    type: "bool",
    help:
      "mode ipvs on a node that cannot run it (no IPVS, scheduler or sysctl): run in nftables mode instead (default true); false refuses to start",
  },
};

export const RUN_USAGE = "kpx run [--config FILE] [--manifests DIR] [flags]";

export async function runCommand(argv: string[], early: Logger): Promise<number> {
  const args = parseArgs(argv, RUN_FLAGS);
  if (args.positionals.length > 0) {
    throw new UsageError(
      `Cannot run: unexpected argument ${args.positionals[0]}\nusage: ${RUN_USAGE}`,
    );
  }
  const { config } = await loadConfigFromArgs(args, early);
  const log = new Logger({ format: config.logFormat, verbosity: config.verbosity });
  const nodeName = resolveNodeName(config, hostname());
  if (!nodeName) throw new Error("Cannot tell this node's name: set --hostname-override");
  const runner = new ProcessRunner();
  const checks = await preflight(runner, { ipv6: true });
  for (const w of checks.warnings) log.warn(w);
  if (checks.errors.length) {
    for (const e of checks.errors) log.error(e);
    throw new Error(
      `Cannot run: this node lacks what kpx needs (${checks.errors.length} problem(s) above)`,
    );
  }
  try {
    for (const ch of await applyConntrackSysctls(runner, config.conntrack)) {
      log.info("Set sysctl", { sysctl: ch.key, from: ch.from, to: ch.to });
    }
  } catch (e) {
    log.warn("Cannot apply conntrack settings; continuing with the kernel's", { error: e });
  }
  const mode = config.mode === "ipvs"
    ? await startIPVSMode(config, runner, log, {
      fallback: args.flags["ipvs-fallback"] as boolean | undefined,
    })
    : { config };
  const conntrack = checks.warnings.some((w) => w.includes("conntrack tool is not installed"))
    ? undefined
    : runner;
  const daemon = new Daemon({
    config: mode.config,
    nodeName,
    ...(args.flags["manifests"] ? { manifests: args.flags["manifests"] as string } : {}),
    planner: await Planner.load(),
    nft: new NftCli(runner),
    ...(conntrack ? { conntrack } : {}),
    ...(mode.ipvs ? { ipvs: mode.ipvs } : {}),
    log,
  });

  const done = Promise.withResolvers<number>();
  const stop = (signal: string) => {
    log.info("Stopping", { signal });
    daemon.stop().then(() => done.resolve(0), (e) => {
      log.error("Cannot stop cleanly", { error: e });
      done.resolve(1);
    });
  };
  const onTerm = () => stop("SIGTERM");
  const onInt = () => stop("SIGINT");
  const configPath = args.flags["config"] as string | undefined;
  const onHup = async () => {
    if (!configPath) {
      log.info("SIGHUP: no --config file to reload");
      return;
    }
    try {
      const text = await Deno.readTextFile(configPath);
      const next = loadConfig({ file: { path: configPath, text }, flags: args.settings }).config;
      daemon.reload(next);
    } catch (e) {
      log.error("Cannot reload the configuration; keeping the current one", {
        error: errorText(e),
      });
    }
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    await daemon.start();
    return await done.promise;
  } finally {
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGHUP", onHup);
  }
}
