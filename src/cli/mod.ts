/**
 * kpx's command line: one handler per subcommand; errors print their cause
 * chain and give exit status 1 (2 for usage errors).
 */
import { errorText, Logger } from "../log/mod.ts";
import { UsageError } from "./args.ts";
import { PLAN_USAGE, planCommand } from "./plan_command.ts";
import { versionCommand } from "./version_command.ts";

const USAGE = `usage: kpx <command> [flags]

commands:
  run       watch the Kubernetes API (or a manifest directory) and program the node
  plan      print the nftables batch for manifests: ${PLAN_USAGE}
  trace     send probe packets through planned rules in a throwaway namespace
  status    show what kpx has programmed on this node
  cleanup   remove kpx's rules from this node
  version   print versions

Run "kpx <command> --help" for the command's flags.
`;

async function write(s: string | Uint8Array): Promise<void> {
  const bytes = typeof s === "string" ? new TextEncoder().encode(s) : s;
  let off = 0;
  while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
}

/** Preliminary logger settings from the raw arguments (before the config loads). */
function earlyLogger(argv: readonly string[]): Logger {
  let verbosity = 0;
  let format: "logfmt" | "json" = "logfmt";
  argv.forEach((a, i) => {
    const v = a.match(/^--?v(?:=(\d+))?$/);
    if (v) verbosity = Number(v[1] ?? argv[i + 1] ?? 0) || 0;
    if (a === "--logging-format=json" || (a === "--logging-format" && argv[i + 1] === "json")) {
      format = "json";
    }
  });
  return new Logger({ verbosity, format });
}

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const log = earlyLogger(rest);
  try {
    switch (cmd) {
      case "plan":
        if (rest.includes("--help") || rest.includes("-h")) return await help("plan");
        return await planCommand(rest, log, write);
      case "version":
        return await versionCommand(write, rest.includes("--json") || rest.includes("-o=json"));
      case undefined:
      case "help":
      case "--help":
      case "-h":
        await write(USAGE);
        return cmd === undefined ? 2 : 0;
      default: {
        const extra = await import("./commands.ts").then((m) => m.COMMANDS[cmd]);
        if (!extra) {
          await write(USAGE);
          log.error(`Unknown command ${JSON.stringify(cmd)}`);
          return 2;
        }
        if (rest.includes("--help") || rest.includes("-h")) return await help(cmd);
        return await extra.run(rest, log, write);
      }
    }
  } catch (e) {
    log.error(errorText(e));
    return e instanceof UsageError ? 2 : 1;
  }
}

async function help(cmd: string): Promise<number> {
  const { COMMAND_HELP } = await import("./commands.ts");
  await write((COMMAND_HELP[cmd] ?? USAGE) + "\n");
  return 0;
}
