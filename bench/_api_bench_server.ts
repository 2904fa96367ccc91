/**
 * The daemon benchmark's API server (test/e2e/api_server.ts), as a child
 * process run inside the benchmark's network namespace, so that kpx, in the
 * same namespace, reaches it on that namespace's loopback. It serves the
 * benchmark cluster (bench/_bench_cluster.ts) and takes commands on stdin:
 *
 *   deno run -A bench/_api_bench_server.ts SERVICES DIR
 *   -> prints "READY <kubeconfig path>" once the objects are in
 *   <- "slice <i> <version>" replaces service i's EndpointSlice; prints "OK"
 *   <- end of input: the server stops
 */
import { startApiServer, writeKubeconfig } from "../test/e2e/mod.ts";
import type { KubeObject } from "../test/e2e/mod.ts";
import { benchNode, benchService, benchSlice } from "./_bench_cluster.ts";

const services = Number(Deno.args[0]);
const dir = Deno.args[1];
if (!Number.isInteger(services) || services < 0 || !dir) {
  throw new TypeError("Cannot start: usage: _api_bench_server.ts SERVICES DIR");
}
// A short history: the benchmark never resumes old watches.
const api = await startApiServer({ historyLimit: 1000 });
const obj = (o: Record<string, unknown>) => o as unknown as KubeObject;
api.store.create("nodes", obj(benchNode()));
for (let i = 0; i < services; i++) {
  api.store.create("services", obj(benchService(i)));
  api.store.create("endpointslices", obj(benchSlice(i, 0)));
}
console.log(`READY ${await writeKubeconfig(dir, api)}`);

let buf = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const [cmd, i, version] = buf.slice(0, nl).split(" ");
    buf = buf.slice(nl + 1);
    if (cmd !== "slice") throw new TypeError(`Cannot run command ${cmd}: unknown`);
    api.store.upsert("endpointslices", obj(benchSlice(Number(i), Number(version))));
    console.log("OK");
  }
}
await api.close();
