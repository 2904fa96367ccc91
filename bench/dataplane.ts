/**
 * One data-plane measurement: flush the node's conntrack table, then run the
 * load generator (dataplane_client.ts) in the client namespace against the
 * ClusterIPs of the loaded services.
 */
import { BenchCommandError, run, runChecked } from "./_compare_exec.ts";
import type { ClientResult, ClientSpec } from "./dataplane_client.ts";
import type { DataplaneTopology, NodeNs } from "./dataplane_topology.ts";

export type { ClientResult, ClientSpec };

function besideThisModule(file: string): string {
  return decodeURIComponent(new URL(file, import.meta.url).pathname);
}

/** Connection rate and connect latency through `node` towards services 0..services-1. */
export async function measureDataplane(
  topo: DataplaneTopology,
  node: NodeNs,
  spec: ClientSpec,
): Promise<ClientResult> {
  // Entries of the previous measurement must not share the table with this one.
  await runChecked(`flush conntrack in ${node.ns}`, [...node.exec, "conntrack", "-F"]);
  const argv = [
    "ip",
    "netns",
    "exec",
    topo.client,
    Deno.execPath(),
    "run",
    "--no-config",
    "--no-prompt",
    "--allow-ffi",
    besideThisModule("./dataplane_client.ts"),
    JSON.stringify(spec),
  ];
  const r = await run(argv);
  if (r.code !== 0) {
    throw new BenchCommandError(`run the load generator in ${topo.client}`, argv, r.code, r.stderr);
  }
  const text = new TextDecoder().decode(r.stdout).trim();
  try {
    return JSON.parse(text.split("\n").at(-1) ?? "") as ClientResult;
  } catch (e) {
    throw new Error(`Cannot read the load generator's result: ${text.slice(0, 200)}`, { cause: e });
  }
}
