/**
 * Command-line parsing, kube-proxy style: --flag=value, --flag value, --bool,
 * --bool=false. Settings flags come from the shared settings table; each
 * command adds its own flags.
 */
import { SETTINGS } from "../config/mod.ts";

export type FlagType = "string" | "bool" | "int" | "strings";

export interface FlagSpec {
  type: FlagType;
  help: string;
  /** Short alias, e.g. "o" for --output. */
  short?: string;
}

export interface ParsedArgs {
  /** Settings flags in order, for loadConfig(). */
  settings: Array<[string, string | boolean]>;
  /** The command's own flags. */
  flags: Record<string, string | boolean | number | string[]>;
  positionals: string[];
}

export class UsageError extends Error {
  override name = "UsageError";
}

const SETTING_TYPES = new Map(
  SETTINGS.filter((s) => s.flag).map((s) =>
    [s.flag!, s.type === "bool" ? "bool" : "string"] as const
  ),
);

export function parseArgs(argv: readonly string[], own: Record<string, FlagSpec>): ParsedArgs {
  const out: ParsedArgs = { settings: [], flags: {}, positionals: [] };
  const byShort = new Map(
    Object.entries(own).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]),
  );
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      out.positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    let name = eq >= 0 ? body.slice(0, eq) : body;
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (!arg.startsWith("--")) name = byShort.get(name) ?? name;
    const spec = own[name];
    const type = spec?.type ?? SETTING_TYPES.get(name);
    if (!type) throw new UsageError(`Cannot parse arguments: unknown flag --${name}`);
    if (type === "bool") {
      if (value !== undefined && value !== "true" && value !== "false") {
        throw new UsageError(
          `Cannot parse arguments: --${name} takes true or false, got ${JSON.stringify(value)}`,
        );
      }
      const b = value === undefined ? true : value === "true";
      if (spec) out.flags[name] = b;
      else out.settings.push([name, b]);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) {
        throw new UsageError(`Cannot parse arguments: --${name} needs a value`);
      }
      value = argv[++i]!;
    }
    if (!spec) {
      out.settings.push([name, value]);
    } else if (spec.type === "int") {
      if (!/^-?[0-9]+$/.test(value)) {
        throw new UsageError(
          `Cannot parse arguments: --${name} takes an integer, got ${JSON.stringify(value)}`,
        );
      }
      out.flags[name] = Number(value);
    } else if (spec.type === "strings") {
      out.flags[name] = [...(out.flags[name] as string[] | undefined ?? []), value];
    } else {
      out.flags[name] = value;
    }
  }
  return out;
}

export function flagHelp(own: Record<string, FlagSpec>, withSettings: boolean): string {
  const lines = Object.entries(own).map(([n, s]) =>
    `  ${s.short ? `-${s.short}, ` : ""}--${n}${s.type === "bool" ? "" : " VALUE"}\n      ${s.help}`
  );
  if (withSettings) {
    lines.push("", "kube-proxy flags (override the --config file):");
    for (const s of SETTINGS) {
      if (s.flag && s.apply) {
        lines.push(`  --${s.flag}${s.type === "bool" ? "" : " VALUE"}\n      ${s.help}`);
      }
    }
  }
  return lines.join("\n");
}
