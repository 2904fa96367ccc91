/**
 * Real-kernel test helpers. Add one export line per module.
 * @module
 */

export * from "./testbed.ts";
export * from "./api_server.ts";
export * from "./kubeconfig.ts";
