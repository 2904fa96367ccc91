export {
  type Config,
  ConfigError,
  defaultConfig,
  type DetectLocalMode,
  IPVS_SCHEDULERS,
  type IPVSScheduler,
  type LogFormat,
  type ProxyMode,
} from "./config.ts";
export {
  CONFIG_API_VERSION,
  CONFIG_KIND,
  type ConfigSources,
  loadConfig,
  type LoadedConfig,
} from "./load.ts";
export { planContext, resolveNodeName } from "./context.ts";
export { ipvsContext, ipvsNodeIPs } from "./ipvs_context.ts";
export { type Setting, SETTINGS } from "./settings.ts";
export { formatDuration, parseDuration } from "./duration.ts";
