/**
 * Manual reproduction (not run by the test suite: the crash is not certain on
 * each run) of the reason DenoKubeConfig forces HTTP/1.1. client-node's
 * default KubeConfig lets undici negotiate HTTP/2, which Deno.serve (and a
 * real kube-apiserver) accept; when the server stops with a watch open
 * (GOAWAY, reset stream), Deno 2.9.6's node:http2 kills the process: an
 * nghttp2 assertion (`find_stream_on_goaway_func: stream->closed_next ==
 * NULL`, exit 134), a segmentation fault (139), or an uncaught undici
 * assertion in client-h2.js. Measured here: about one run in two crashes.
 *
 *     for i in 1 2 3 4 5; do deno run -A test/e2e/_api_h2_repro.ts; echo "exit $?"; done
 *
 * It prints "survived" when the process lives on.
 * @module
 */
import "./_api_client_stream_fix.ts";
import * as k8s from "@kubernetes/client-node";
import { startApiServer } from "./api_server.ts";
import { kubeconfigText } from "./kubeconfig.ts";

const api = await startApiServer();
api.store.create("services", { metadata: { name: "a", namespace: "default" } });
const kc = new k8s.KubeConfig();
kc.loadFromString(kubeconfigText(api));
const core = kc.makeApiClient(k8s.CoreV1Api);
const informer = k8s.makeInformer(kc, "/api/v1/services", () => core.listServiceForAllNamespaces());
informer.on("error", (e) => console.error("informer error:", String(e)));
await informer.start();
await api.requests.waitFor((r) => r.watch && r.status === 200, { what: "the watch" });
await api.stop();
// A deliberate pause: what is awaited is a crash, which sends no event.
await new Promise((resolve) => setTimeout(resolve, 500));
await informer.stop();
await api.close();
console.log("survived");
