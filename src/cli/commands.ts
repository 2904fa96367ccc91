/** The command table: usage and flags of each subcommand. */
import type { Logger } from "../log/mod.ts";
import { flagHelp } from "./args.ts";
import { PLAN_FLAGS, PLAN_USAGE } from "./plan_command.ts";

export interface Command {
  run(argv: string[], log: Logger, out: (s: string | Uint8Array) => Promise<void>): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {};

export const COMMAND_HELP: Record<string, string> = {
  plan: `usage: ${PLAN_USAGE}\n\nPrints the nftables batch kpx would load for the Services, EndpointSlices\nand Node in the manifests (files or directories, YAML or JSON, List kinds).\n\n${flagHelp(PLAN_FLAGS, true)}`,
};
