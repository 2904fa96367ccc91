/**
 * The command table. Each subcommand lives in its own file exporting a
 * handler; registering one is one entry here and one in COMMAND_HELP.
 */
import type { Logger } from "../log/mod.ts";
import { flagHelp } from "./args.ts";
import { PLAN_FLAGS, PLAN_USAGE } from "./plan_command.ts";

export type Output = (s: string | Uint8Array) => Promise<void>;

export interface Command {
  run(argv: string[], log: Logger, out: Output): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {};

export const COMMAND_HELP: Record<string, string> = {
  plan: `usage: ${PLAN_USAGE}\n\nPrints the nftables batch kpx would load for the Services, EndpointSlices\nand Node in the manifests (files or directories, YAML or JSON, List kinds).\n\n${flagHelp(PLAN_FLAGS, true)}`,
};
