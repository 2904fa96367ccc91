export {
  errorText,
  type Fields,
  Logger,
  type LoggerOptions,
  type LogLevel,
  type LogSettings,
} from "./logger.ts";
