/**
 * Probe client program for the testbed: sends requests to echo servers and prints one JSON
 * array of results on stdout. The client itself lives in src/trace/probe_client.ts (`kpx
 * trace` starts it as `kpx __probe`); this file is what the testbed runs:
 *
 *   ip netns exec NS deno run --no-config --allow-ffi probe_client.ts < batch.json
 * @module
 */

import { probeMain } from "../../src/trace/mod.ts";

export { runProbes } from "../../src/trace/mod.ts";

if (import.meta.main) await probeMain();
