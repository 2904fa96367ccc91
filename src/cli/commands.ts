/**
 * The command table. Each subcommand lives in its own file exporting a
 * handler; registering one is one entry here and one in COMMAND_HELP.
 */
import type { Logger } from "../log/mod.ts";
import { flagHelp } from "./args.ts";
import { PLAN_FLAGS, PLAN_USAGE } from "./plan_command.ts";
import { RUN_FLAGS, RUN_USAGE, runCommand } from "./run_command.ts";
import { cleanupCommand, statusCommand } from "./table_commands.ts";
import { probeCommand, TRACE_FLAGS, TRACE_HELP, traceCommand } from "./trace_command.ts";

export type Output = (s: string | Uint8Array) => Promise<void>;

export interface Command {
  run(argv: string[], log: Logger, out: Output): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  run: { run: (argv, log) => runCommand(argv, log) },
  cleanup: { run: cleanupCommand },
  status: { run: statusCommand },
  trace: { run: traceCommand },
  // Hidden: kpx trace's probe client, started by kpx itself inside a namespace.
  __probe: { run: probeCommand },
};

export const COMMAND_HELP: Record<string, string> = {
  run:
    `usage: ${RUN_USAGE}\n\nWatches the Kubernetes API (kubeconfig, or in-cluster) or a directory of\nmanifests, and programs this node's nftables so Services reach their\nendpoints. SIGTERM stops it and leaves the rules; SIGHUP reloads --config.\n\n${
      flagHelp(RUN_FLAGS, true)
    }`,
  cleanup: "usage: kpx cleanup\n\nRemoves kpx's nftables table (inet kpx) from this node.",
  status: "usage: kpx status [-o json]\n\nShows what kpx has programmed on this node.",
  trace: `${TRACE_HELP}\n\n${flagHelp(TRACE_FLAGS, true)}`,
  __probe:
    "usage: kpx __probe < BATCH.json\n\nInternal: kpx trace's probe client (a probe batch as JSON on stdin, results as JSON on stdout).",
  plan:
    `usage: ${PLAN_USAGE}\n\nPrints the nftables batch kpx would load for the Services, EndpointSlices\nand Node in the manifests (files or directories, YAML or JSON, List kinds).\n\n${
      flagHelp(PLAN_FLAGS, true)
    }`,
};
