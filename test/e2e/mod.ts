/**
 * Real-kernel test helpers. Add one export line per module.
 * @module
 */

export * from "./testbed.ts";
