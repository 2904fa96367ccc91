/** What several commands share: loading the config and the manifests. */
import { loadConfig, type LoadedConfig } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { ParsedArgs } from "./args.ts";

export const CONFIG_FLAG = {
  config: { type: "string", help: "KubeProxyConfiguration file (YAML or JSON)" },
} as const;

export async function loadConfigFromArgs(args: ParsedArgs, log: Logger): Promise<LoadedConfig> {
  const path = args.flags["config"] as string | undefined;
  let file: { path: string; text: string } | undefined;
  if (path) {
    try {
      file = { path, text: await Deno.readTextFile(path) };
    } catch (e) {
      throw new Error(`Cannot read config file ${path}: ${(e as Error).message}`, { cause: e });
    }
  }
  const loaded = loadConfig({ ...(file ? { file } : {}), flags: args.settings });
  for (const field of loaded.ignored) {
    log.info("Setting is accepted but not implemented by kpx", { setting: field });
  }
  return loaded;
}

export function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    // Without --allow-sys the hostname is unknown; the caller then needs --hostname-override.
    return "";
  }
}
