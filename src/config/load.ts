/** Builds the Config: defaults, then the KubeProxyConfiguration file, then flags. */
import { parse as parseYAML } from "yaml";
import { type Config, ConfigError, defaultConfig } from "./config.ts";
import {
  isSection,
  type ModeScoped,
  readValue,
  resolveModeScoped,
  type Setting,
  settingByFlag,
  settingByPath,
} from "./settings.ts";

export const CONFIG_API_VERSION = "kubeproxy.config.k8s.io/v1alpha1";
export const CONFIG_KIND = "KubeProxyConfiguration";

/** Fields whose value is a free-form map, not a nesting of known fields. */
const OPAQUE_MAPS = new Set(["featureGates", "logging.options"]);
/** Sections kpx does not implement at all (other platforms). */
const FOREIGN_SECTIONS = new Set(["winkernel"]);

export interface LoadedConfig {
  config: Config;
  /** Settings kpx accepts but does not implement, each named once. */
  ignored: string[];
}

export interface ConfigSources {
  /** Text of the --config file and its path (for messages). */
  file?: { path: string; text: string };
  /** Flag name (without --) to raw string value, in command-line order. */
  flags?: ReadonlyArray<[string, string | boolean]>;
}

export function loadConfig(sources: ConfigSources): LoadedConfig {
  const config = defaultConfig();
  // Sync periods are resolved per layer, so that a flag beats the file whichever
  // section (top level, iptables, nftables, ipvs) each of them names.
  const fileScoped: ModeScoped = { syncPeriodMs: {}, minSyncPeriodMs: {} };
  const flagScoped: ModeScoped = { syncPeriodMs: {}, minSyncPeriodMs: {} };
  const ignored = new Set<string>();
  const apply = (s: Setting, raw: unknown, where: string, scoped: ModeScoped) => {
    const v = readValue(s, raw, where);
    if (s.apply) s.apply(config, v, scoped, where);
    else ignored.add(where);
  };

  if (sources.file) {
    const { path, text } = sources.file;
    let doc: unknown;
    try {
      doc = parseYAML(text);
    } catch (e) {
      throw new ConfigError(path, `not valid YAML or JSON: ${(e as Error).message}`, { cause: e });
    }
    if (doc === null || doc === undefined) doc = {};
    if (typeof doc !== "object" || Array.isArray(doc)) {
      throw new ConfigError(path, "expected a KubeProxyConfiguration object");
    }
    const root = doc as Record<string, unknown>;
    if (root["apiVersion"] !== undefined && root["apiVersion"] !== CONFIG_API_VERSION) {
      throw new ConfigError(
        `${path}: apiVersion`,
        `expected ${CONFIG_API_VERSION}, got ${JSON.stringify(root["apiVersion"])}`,
      );
    }
    if (root["kind"] !== undefined && root["kind"] !== CONFIG_KIND) {
      throw new ConfigError(
        `${path}: kind`,
        `expected ${CONFIG_KIND}, got ${JSON.stringify(root["kind"])}`,
      );
    }
    const walk = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (!prefix && (k === "apiVersion" || k === "kind")) continue;
        // null means "not set" in KubeProxyConfiguration (pointer fields).
        if (v === null) continue;
        if (OPAQUE_MAPS.has(p) || FOREIGN_SECTIONS.has(p)) {
          ignored.add(`${path}: ${p}`);
          continue;
        }
        const s = settingByPath(p);
        if (s) {
          apply(s, v, `${path}: ${p}`, fileScoped);
        } else if (!isSection(p)) {
          // Whatever its value, {} included: kube-proxy's strict decoding refuses it too.
          throw new ConfigError(`${path}: ${p}`, "unknown field");
        } else if (typeof v === "object" && !Array.isArray(v)) {
          walk(v as Record<string, unknown>, p);
        } else {
          throw new ConfigError(`${path}: ${p}`, `expected an object, got ${JSON.stringify(v)}`);
        }
      }
    };
    walk(root, "");
  }

  for (const [flag, raw] of sources.flags ?? []) {
    const s = settingByFlag(flag);
    if (!s) throw new ConfigError(`--${flag}`, "unknown flag");
    apply(s, raw, `--${flag}`, flagScoped);
  }

  // The mode is final here (flags applied): pick each layer's periods for it.
  resolveModeScoped(config, fileScoped);
  resolveModeScoped(config, flagScoped);
  validate(config);
  return { config, ignored: [...ignored] };
}

function validate(c: Config): void {
  if (c.syncPeriodMs <= 0) throw new ConfigError("syncPeriod", "must be greater than 0");
  if (c.minSyncPeriodMs < 0) throw new ConfigError("minSyncPeriod", "must not be negative");
  if (c.minSyncPeriodMs > c.syncPeriodMs) {
    throw new ConfigError(
      "minSyncPeriod",
      `${c.minSyncPeriodMs}ms is longer than syncPeriod ${c.syncPeriodMs}ms`,
    );
  }
  if (c.detectLocalMode === "BridgeInterface" && !c.bridgeInterface) {
    throw new ConfigError(
      "detectLocal.bridgeInterface",
      "must be set when detectLocalMode is BridgeInterface",
    );
  }
  if (c.detectLocalMode === "InterfaceNamePrefix" && !c.interfaceNamePrefix) {
    throw new ConfigError(
      "detectLocal.interfaceNamePrefix",
      "must be set when detectLocalMode is InterfaceNamePrefix",
    );
  }
  for (
    const [field, addr] of [["healthzBindAddress", c.healthzBindAddress], [
      "metricsBindAddress",
      c.metricsBindAddress,
    ]]
  ) {
    if (addr && !/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[a-zA-Z0-9.-]*):[0-9]{1,5}$/.test(addr!)) {
      throw new ConfigError(field!, `${JSON.stringify(addr)} is not host:port`);
    }
  }
  if (c.verbosity < 0) throw new ConfigError("logging.verbosity", "must not be negative");
}
