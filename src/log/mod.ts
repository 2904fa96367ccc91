export { errorText, type Fields, Logger, type LoggerOptions, type LogLevel } from "./logger.ts";
