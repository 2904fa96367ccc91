/**
 * The test API server (./api_server.ts) against the real client:
 * npm:@kubernetes/client-node 2.0.1 informers (ListWatch) under Deno 2.9.6.
 *
 * FINDINGS (each is exercised by a test below unless marked "read in the source")
 *
 * HTTP layer. client-node does every request, lists and watches, with
 * undici 8.12.4's fetch (npm, not Deno's fetch) over Deno's node:tls. TLS
 * with the kubeconfig's certificate-authority-data, bearer tokens and chunked
 * streaming all work. Two Deno bugs break it, each with a small workaround
 * (./_api_client_stream_fix.ts, ./_api_client.ts; src/source/ needs both):
 *  1. HTTP/2 kills the process. undici offers ALPN http/1.1+h2; Deno.serve and
 *     a real kube-apiserver choose h2. When the server sends GOAWAY or resets
 *     the watch stream (restart, dropped watch), Deno's node:http2 aborts the
 *     process: nghttp2 assertion `find_stream_on_goaway_func` (exit 134), a
 *     segfault (139) or an uncaught undici assertion (client-h2.js
 *     `client[kPending] === 0`); about one run in two of ./_api_h2_repro.ts.
 *     Fix: DenoKubeConfig overrides the public createDispatcherOptions() to
 *     add `allowH2: false` to the connect options (undici reads it there).
 *  2. A dropped or timed-out watch leaves the informer silently dead. Deno's
 *     node:stream isReadable() returns null for a WHATWG ReadableStream;
 *     undici's fetch checks it before erroring a response body, so a
 *     connection cut mid-body, or an aborted request, never ends the body:
 *     the Watch never calls `done`, no event, no error, no reconnect, forever.
 *     Fix: _api_client_stream_fix.ts makes isReadable answer true for web
 *     streams; it must be imported before client-node (undici copies the
 *     function when it loads). The last test fails once Deno fixes this.
 *
 * Informer (ListWatch) behaviour, with both fixes:
 *  - start() lists (the list function is the caller's: ListWatch does not
 *    paginate), then watches from the list's resourceVersion; it resolves once
 *    the watch's response headers arrived (or it failed).
 *  - "connect" is emitted at every attempt, before the list or watch, not on
 *    success: it cannot reset a backoff (src/source/api.ts resets its backoff
 *    on it, so its backoff never grows past 1 s).
 *  - "error" stops the informer for good: it does NOT retry; the caller must
 *    call start() again (own backoff). Errors that stop it: a watch cut
 *    mid-stream (TypeError "terminated", cause.code UND_ERR_SOCKET "other side
 *    closed"); any non-200 watch answer other than 410 (Error with statusCode,
 *    message = status text, e.g. 500 "Internal Server Error"); a refused
 *    connection (TypeError "fetch failed", cause.code ECONNREFUSED, or
 *    UND_ERR_SOCKET on a pooled connection the server closed); any list error
 *    (ApiException: .code 401 with .body undefined for a bad token; a 410 on
 *    a continue token too: the list function must restart the list itself).
 *    start() after an error resumes the watch from the last resourceVersion
 *    without relisting.
 *  - Resumes by itself, no "error": a watch the server ends cleanly (its
 *    timeout, a graceful close) and the Watch's own inactivity timeout (30 s
 *    of silence, private field requestTimeoutMs; StoppableWatch can set it).
 *    The reconnect waits 0 ms, then 1 s doubling to 30 s while reconnects
 *    bring no event; any event (bookmarks too) resets it to 0 (read in the
 *    source). After a 410 relist the next watch waits that delay too.
 *  - 410: an ERROR event with code 410 on the watch (what the server sends for
 *    a compacted resourceVersion), or a 410 answer to the watch, makes it
 *    relist when the stream ends; the relist reports "delete" for objects
 *    gone, "update" for changed ones, "add" for new ones: the cache ends equal
 *    to the server's objects.
 *  - Bookmarks: ListWatch does not ask for them (no allowWatchBookmarks) but
 *    takes the resourceVersion of those it gets. Without them a quiet watch
 *    (the node's) keeps an old resourceVersion and must relist after every
 *    compaction; with them (StoppableWatch's `bookmarks`) it resumes.
 *  - stop() aborts only a watch that has connected: a watch still waiting for
 *    headers, or one started after a list or reconnect delay that was in
 *    flight, opens after stop() and stays open (a leaked connection, and
 *    events after stop). stop() also reports the abort as an "error"
 *    (AbortError). StoppableWatch fixes all three with an AbortSignal.
 *  - client-node makes a new undici connection pool for every request and
 *    closes none (idle sockets close after undici's 4 s keep-alive timeout, read in the source;
 *    no test leaked one). DenoKubeConfig reuses the first one (half the TLS
 *    connections here) and destroys it in close(). Optional.
 *  - No URL carries the token; the sanitizers stay on: nothing leaks when
 *    informers are stopped before the KubeConfig and the server are closed.
 * @module
 */
import "./_api_client_stream_fix.ts";
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { DenoKubeConfig } from "./_api_client.ts";
import { denoStreamBugPresent } from "./_api_client_stream_fix.ts";
import { InformerProbe, paginatedList } from "./_api_probe.ts";
import { parseLabelSelector } from "./_api_selectors.ts";
import { generateTlsMaterial, type TlsMaterial } from "./_api_tls.ts";
import {
  type ApiServer,
  type ApiServerOptions,
  type KubeObject,
  ObjectStore,
  type RequestRecord,
  startApiServer,
  StoreError,
  WaitTimeoutError,
} from "./api_server.ts";
import { writeKubeconfig } from "./kubeconfig.ts";

/** kube-proxy's (and kpx's) selector: not another proxy's, not headless. */
const PROXY_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
const SERVICES = "/api/v1/services";
const SLICES = "/apis/discovery.k8s.io/v1/endpointslices";
const NODES = "/api/v1/nodes";

// ---------------------------------------------------------------- fixtures

function service(name: string, labels: Record<string, string> = {}, port = 80): KubeObject {
  return {
    metadata: { name, namespace: "default", labels },
    spec: { type: "ClusterIP", clusterIP: "10.96.0.10", ports: [{ port, protocol: "TCP" }] },
  };
}

function slice(name: string, serviceName: string, ip = "10.0.0.1"): KubeObject {
  return {
    metadata: {
      name,
      namespace: "default",
      labels: { "kubernetes.io/service-name": serviceName },
    },
    addressType: "IPv4",
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ port: 8080, protocol: "TCP" }],
  };
}

function node(name: string, podCIDR = "10.244.0.0/24"): KubeObject {
  return { metadata: { name, labels: {} }, spec: { podCIDR } };
}

function pad(i: number): string {
  return String(i).padStart(3, "0");
}

let sharedTls: Promise<TlsMaterial> | undefined;

/** A server, a kubeconfig for it, client-node API clients, and informers; all closed at the end. */
class Harness implements AsyncDisposable {
  readonly probes: InformerProbe<k8s.KubernetesObject>[] = [];
  private constructor(
    readonly api: ApiServer,
    readonly kc: DenoKubeConfig,
    readonly dir: string,
    readonly kubeconfig: string,
  ) {}

  static async start(
    options: ApiServerOptions = {},
    kubeconfig: { token?: string } = {},
  ): Promise<Harness> {
    sharedTls ??= generateTlsMaterial();
    const api = await startApiServer({ tls: await sharedTls, ...options });
    const dir = await Deno.makeTempDir({ prefix: "kpx-api-test-" });
    const path = await writeKubeconfig(dir, api, kubeconfig);
    const kc = new DenoKubeConfig();
    kc.loadFromFile(path);
    return new Harness(api, kc, dir, path);
  }

  /** Services with kube-proxy's selector, listed in pages of `limit`. */
  services(options: { limit?: number; bookmarks?: boolean; inactivityTimeoutMs?: number } = {}) {
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const list = paginatedList((cont) =>
      core.listServiceForAllNamespaces({
        labelSelector: PROXY_SELECTOR,
        limit: options.limit ?? 100,
        ...(cont ? { _continue: cont } : {}),
      })
    );
    return this.#probe(SERVICES, list, { labelSelector: PROXY_SELECTOR, ...options });
  }

  slices(options: { limit?: number } = {}) {
    const discovery = this.kc.makeApiClient(k8s.DiscoveryV1Api);
    const list = paginatedList((cont) =>
      discovery.listEndpointSliceForAllNamespaces({
        labelSelector: PROXY_SELECTOR,
        limit: options.limit ?? 100,
        ...(cont ? { _continue: cont } : {}),
      })
    );
    return this.#probe(SLICES, list, { labelSelector: PROXY_SELECTOR });
  }

  node(name: string, options: { bookmarks?: boolean } = {}) {
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const fieldSelector = `metadata.name=${name}`;
    const list = paginatedList((cont) =>
      core.listNode({ fieldSelector, limit: 100, ...(cont ? { _continue: cont } : {}) })
    );
    return this.#probe(NODES, list, { fieldSelector, ...options });
  }

  #probe(
    path: string,
    list: () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
    options: ConstructorParameters<typeof InformerProbe>[3],
  ): InformerProbe<k8s.KubernetesObject> {
    const probe = new InformerProbe(this.kc, path, list, options);
    this.probes.push(probe);
    return probe;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.probes) await p.stop();
    await this.kc.close();
    await this.api.close();
    await Deno.remove(this.dir, { recursive: true });
    deepEqual(this.api.errors, [], "the API server's handler threw");
  }
}

/** The server's objects of a resource as "namespace/name@rv", for comparing with an informer. */
function serverState(api: ApiServer, resource: "services", selector = PROXY_SELECTOR): string[] {
  const matches = parseLabelSelector(selector);
  return api.store.list(resource).filter(matches).map((o) =>
    `${o.metadata.namespace}/${o.metadata.name}@${o.metadata.resourceVersion}`
  );
}

function informerState(probe: InformerProbe<k8s.KubernetesObject>): string[] {
  return probe.informer.list().map((o) =>
    `${o.metadata?.namespace}/${o.metadata?.name}@${o.metadata?.resourceVersion}`
  ).sort();
}

/** Awaits a watch on `path` (after `mark`) that the server is streaming. */
function openWatch(api: ApiServer, path: string, mark: number): Promise<RequestRecord> {
  return api.requests.waitFor(
    (r) => r.path === path && r.watch && r.status === 200 && !r.watchEnd,
    {
      after: mark,
      what: `an open watch on ${path}`,
    },
  );
}

const isList = (path: string) => (r: RequestRecord) => r.path === path && !r.watch;
const isWatch = (path: string) => (r: RequestRecord) => r.path === path && r.watch;

// ------------------------------------------------- the protocol, raw fetch

/** Deno's own fetch, trusting the server's CA. */
class RawClient implements Disposable {
  #client: Deno.HttpClient;
  constructor(readonly api: ApiServer, readonly token = api.token) {
    this.#client = Deno.createHttpClient({ caCerts: [api.caPem] });
  }

  fetch(path: string): Promise<Response> {
    return fetch(this.api.url + path, {
      client: this.#client,
      headers: { authorization: `Bearer ${this.token}` },
    });
  }

  async json(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await this.fetch(path);
    return { status: res.status, body: await res.json() };
  }

  /** Reads watch events until `stop` says enough (or the stream ends); then cancels. */
  async watch(
    path: string,
    stop: (events: { type: string; object: Record<string, unknown> }[]) => boolean,
  ): Promise<{ type: string; object: Record<string, unknown> }[]> {
    const res = await this.fetch(path);
    equal(res.status, 200);
    const events: { type: string; object: Record<string, unknown> }[] = [];
    let buffer = "";
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    try {
      while (!stop(events)) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          events.push(JSON.parse(buffer.slice(0, nl)));
          buffer = buffer.slice(nl + 1);
        }
      }
    } finally {
      await reader.cancel();
    }
    return events;
  }

  [Symbol.dispose](): void {
    this.#client.close();
  }
}

Deno.test("list pages share one snapshot; a compacted continue token gets 410 Expired", async () => {
  await using api = await startApiServer({ tls: await (sharedTls ??= generateTlsMaterial()) });
  using raw = new RawClient(api);
  for (let i = 0; i < 5; i++) api.store.create("services", service(`s${i}`));
  api.store.create(
    "services",
    service("other", { "service.kubernetes.io/service-proxy-name": "x" }),
  );

  const first = await raw.json(`${SERVICES}?limit=2&labelSelector=${PROXY_SELECTOR}`);
  equal(first.status, 200);
  equal(first.body["kind"], "ServiceList");
  const meta = first.body["metadata"] as Record<string, unknown>;
  equal(meta["resourceVersion"], api.store.resourceVersion);
  equal(meta["remainingItemCount"], 3);
  // A change between pages is not seen by the rest of this list.
  api.store.delete("services", "s3", "default");
  const cont = encodeURIComponent(String(meta["continue"]));
  const second = await raw.json(
    `${SERVICES}?limit=10&labelSelector=${PROXY_SELECTOR}&continue=${cont}`,
  );
  const names = (second.body["items"] as KubeObject[]).map((o) => o.metadata.name);
  deepEqual(names, ["s2", "s3", "s4"]);
  equal(
    (second.body["metadata"] as Record<string, unknown>)["resourceVersion"],
    meta["resourceVersion"],
  );

  api.store.compact();
  const stale = await raw.json(`${SERVICES}?limit=2&continue=${cont}`);
  equal(stale.status, 410);
  equal(stale.body["kind"], "Status");
  equal(stale.body["reason"], "Expired");

  const nodes = await raw.json(`${NODES}?fieldSelector=metadata.name%3Dnode-a`);
  deepEqual(nodes.body["items"], []);
  api.store.create("nodes", node("node-a"));
  api.store.create("nodes", node("node-b"));
  const one = await raw.json(`${NODES}?fieldSelector=metadata.name%3Dnode-a`);
  deepEqual((one.body["items"] as KubeObject[]).map((o) => o.metadata.name), ["node-a"]);
  equal((await raw.json(`${NODES}/node-b`)).body["kind"], "Node");
  equal((await raw.json(`${NODES}/node-c`)).status, 404);
  equal((await raw.json(`${SERVICES}?labelSelector=a%20in%20(`)).status, 400);
  equal((await raw.json("/apis")).body["kind"], "APIGroupList");
});

Deno.test("watch replays after a resourceVersion, turns selector changes into ADDED/DELETED, sends bookmarks", async () => {
  await using api = await startApiServer({
    tls: await (sharedTls ??= generateTlsMaterial()),
    bookmarkIntervalMs: 50,
  });
  using raw = new RawClient(api);
  api.store.create("services", service("a"));
  const rv = api.store.resourceVersion;
  api.store.create("services", service("b"));
  api.store.update("services", service("a", { "service.kubernetes.io/headless": "" }));
  api.store.update("services", service("a"));
  api.store.delete("services", "b", "default");

  const events = await raw.watch(
    `${SERVICES}?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true&labelSelector=${PROXY_SELECTOR}`,
    (evs) => evs.some((e) => e.type === "BOOKMARK"),
  );
  deepEqual(
    events.map((e) => `${e.type} ${(e.object["metadata"] as { name?: string }).name ?? ""}`),
    ["ADDED b", "DELETED a", "ADDED a", "DELETED b", "BOOKMARK "],
  );
  const bookmark = events.at(-1)!.object["metadata"] as { resourceVersion: string };
  equal(bookmark.resourceVersion, api.store.resourceVersion);

  api.store.compact();
  const expired = await raw.watch(`${SERVICES}?watch=true&resourceVersion=${rv}`, () => false);
  equal(expired.length, 1);
  equal(expired[0]!.type, "ERROR");
  equal(expired[0]!.object["code"], 410);
  await api.requests.waitFor((r) => r.watchEnd === "expired", { what: "the expired watch to end" });

  const ended = await raw.watch(`${SERVICES}?watch=true&timeoutSeconds=0`, () => false);
  deepEqual(ended.map((e) => e.type), ["ADDED"]);
});

Deno.test("label selectors: exists, !exists, =, !=, in, notin, comma-joined", () => {
  const o = (labels: Record<string, string>): KubeObject => ({ metadata: { name: "x", labels } });
  const proxy = parseLabelSelector(PROXY_SELECTOR);
  deepEqual(
    [proxy(o({})), proxy(o({ "service.kubernetes.io/headless": "" })), proxy(o({ app: "a" }))],
    [true, false, true],
  );
  const sel = parseLabelSelector("app=web,tier!=db,env in (prod, stage),zone notin (z1),team");
  ok(sel(o({ app: "web", env: "prod", team: "t" })));
  ok(!sel(o({ app: "web", env: "prod", team: "t", tier: "db" })));
  ok(!sel(o({ app: "web", env: "dev", team: "t" })));
  ok(!sel(o({ app: "web", env: "prod", team: "t", zone: "z1" })));
  ok(!sel(o({ app: "web", env: "prod" })));
});

Deno.test("the store stamps uid, generation and resourceVersion, and wipe() forces a relist", () => {
  const store = new ObjectStore({ initialResourceVersion: 10, historyLimit: 3 });
  const created = store.create("services", service("a"));
  deepEqual([created.metadata.resourceVersion, created.metadata.generation], ["11", 1]);
  const relabelled = store.update("services", service("a", { x: "y" }));
  equal(relabelled.metadata.generation, 1, "metadata changes keep the generation");
  const changed = store.update("services", service("a", {}, 8080));
  deepEqual([changed.metadata.generation, changed.metadata.uid], [2, created.metadata.uid]);
  const deleted = store.delete("services", "a", "default");
  equal(deleted.metadata.resourceVersion, "14");
  equal(store.eventsAfter(10), undefined, "a history of 3 events no longer reaches rv 10");
  equal(store.eventsAfter(11)?.length, 3);
  throws(() => store.update("services", service("a")), StoreError);
  store.create("nodes", node("n"));
  store.wipe();
  deepEqual(store.list("nodes"), []);
  equal(store.eventsAfter(15), undefined, "every earlier resourceVersion is compacted");
});

Deno.test("a request without the right bearer token gets 401 with a Status body", async () => {
  await using api = await startApiServer({ tls: await (sharedTls ??= generateTlsMaterial()) });
  using raw = new RawClient(api, "wrong");
  const res = await raw.json(SERVICES);
  equal(res.status, 401);
  deepEqual(
    [res.body["kind"], res.body["reason"], res.body["code"]],
    ["Status", "Unauthorized", 401],
  );
  equal(api.requests.entries[0]?.authorized, false);
});

// ----------------------------------------- the real client, under Deno

Deno.test("informers list 250 services in pages of 100, slices and one node, then see changes", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 250; i++) api.store.create("services", service(`svc-${pad(i)}`));
  api.store.create(
    "services",
    service("other-proxy", { "service.kubernetes.io/service-proxy-name": "x" }),
  );
  api.store.create("services", service("headless", { "service.kubernetes.io/headless": "" }));
  for (let i = 0; i < 120; i++) {
    api.store.create("endpointslices", slice(`svc-${pad(i)}-abc`, `svc-${pad(i)}`));
  }
  api.store.create("nodes", node("node-a"));
  api.store.create("nodes", node("node-b"));

  const services = h.services({ limit: 100 });
  const slices = h.slices({ limit: 50 });
  const nodeA = h.node("node-a");
  await Promise.all([services.start(), slices.start(), nodeA.start()]);

  equal(services.keys().length, 250);
  equal(services.count("add"), 250);
  ok(
    !services.keys().includes("default/other-proxy") &&
      !services.keys().includes("default/headless"),
  );
  equal(slices.keys().length, 120);
  deepEqual(nodeA.keys(), ["node-a"]);
  const pages = api.requests.filter(isList(SERVICES));
  deepEqual(pages.map((r) => [r.params.get("limit"), r.params.has("continue")]), [
    ["100", false],
    ["100", true],
    ["100", true],
  ]);

  api.store.create("services", service("svc-new"));
  api.store.update("services", service("svc-001", {}, 8080));
  api.store.delete("services", "svc-002", "default");
  api.store.update(
    "services",
    service("svc-003", { "service.kubernetes.io/service-proxy-name": "x" }),
  );
  api.store.create("services", service("svc-headless", { "service.kubernetes.io/headless": "" }));
  api.store.update("endpointslices", slice("svc-000-abc", "svc-000", "10.0.0.2"));
  api.store.update("nodes", node("node-b", "10.244.9.0/24"));
  api.store.update("nodes", node("node-a", "10.244.1.0/24"));
  await services.until(
    () =>
      services.count("add") === 251 && services.count("update") === 1 &&
      services.count("delete") === 2,
    "services: 1 add, 1 update, 2 deletes (svc-003 stopped matching)",
  );
  deepEqual(informerState(services), serverState(api, "services"));
  await slices.until(() => slices.count("update") === 1, "the slice update");
  await nodeA.until(() => nodeA.count("update") === 1, "node-a's update (and not node-b's)");
  deepEqual(nodeA.events.filter((e) => e.key === "node-b"), []);
  equal(services.errors().length, 0);
});

Deno.test("a watch the server ends cleanly is resumed from the last resourceVersion, without a relist", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 10; i++) api.store.create("services", service(`svc-${pad(i)}`));
  const services = h.services();
  await services.start();
  const rvSeen = services.informer.latestResourceVersion();
  const mark = api.requests.mark();

  equal(api.closeWatches(), 1);
  api.store.create("services", service("svc-new"));
  api.store.delete("services", "svc-000", "default");
  await services.until(
    () => services.count("delete") === 1 && services.count("add") === 11,
    "the add and delete made while reconnecting",
  );

  deepEqual(informerState(services), serverState(api, "services"));
  equal(api.requests.count(isList(SERVICES), mark), 0, "no relist");
  const rewatch = api.requests.filter(isWatch(SERVICES), mark);
  equal(rewatch[0]?.params.get("resourceVersion"), rvSeen);
  equal(services.errors().length, 0);
});

Deno.test("a watch cut mid-stream surfaces as 'error' and stays down until start(), which resumes", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 10; i++) api.store.create("services", service(`svc-${pad(i)}`));
  const services = h.services();
  await services.start();
  const mark = api.requests.mark();

  equal(api.dropWatches(), 1);
  await services.until(() => services.errors().length === 1, "the error event of the cut watch");
  const error = services.errors()[0] as Error & { cause?: { code?: string } };
  equal(error.name, "TypeError");
  equal(error.message, "terminated");
  equal(error.cause?.code, "UND_ERR_SOCKET");
  // ListWatch does not retry after an error: no watch for longer than its 1 s reconnect delay.
  await rejects(
    api.requests.waitFor(isWatch(SERVICES), { after: mark, timeoutMs: 1500, what: "a retry" }),
    WaitTimeoutError,
  );

  api.store.create("services", service("svc-new"));
  await services.start();
  await services.until(() => services.count("add") === 11, "the service added while down");
  equal(api.requests.count(isList(SERVICES), mark), 0, "start() resumed the watch, no relist");
  deepEqual(informerState(services), serverState(api, "services"));
});

Deno.test("after compaction a resumed watch gets 410 and the informer relists to exactly the server's objects", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 40; i++) api.store.create("services", service(`svc-${pad(i)}`));
  const services = h.services({ limit: 15 });
  await services.start();

  // The open watch goes silent; meanwhile objects change and the history is compacted.
  api.hangWatches().remove();
  api.store.create("services", service("svc-new"));
  api.store.update("services", service("svc-001", {}, 8080));
  for (let i = 30; i < 40; i++) api.store.delete("services", `svc-${pad(i)}`, "default");
  api.store.compact();
  const mark = api.requests.mark();
  equal(api.closeWatches(), 1);

  await api.requests.waitFor((r) => r.watchEnd === "expired", {
    after: mark,
    what: "a 410 on the resumed watch",
  });
  await services.until(
    () => services.count("delete") === 10 && services.count("add") === 41,
    "the relist's 10 deletes and 1 add",
  );
  deepEqual(informerState(services), serverState(api, "services"));
  deepEqual(
    api.requests.filter(isList(SERVICES), mark).map((r) => r.params.has("continue")),
    [false, true, true],
  );
  equal(services.errors().length, 0);

  // The same after a cut watch: start() resumes, gets 410, relists. After a
  // relist ListWatch waits its reconnect delay (1 s here) before watching again.
  await openWatch(api, SERVICES, mark);
  api.store.delete("services", "svc-000", "default");
  api.store.compact();
  api.dropWatches();
  await services.until(() => services.errors().length === 1, "the cut watch's error");
  await services.start();
  await services.until(() => services.count("delete") === 11, "the relist's delete of svc-000");
  deepEqual(informerState(services), serverState(api, "services"));
});

Deno.test("a continue token that expires mid-list: the list function starts over", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 30; i++) api.store.create("services", service(`svc-${pad(i)}`));
  let compacted = false;
  using _ = api.onRequest(() => {
    if (compacted) return;
    compacted = true;
    api.store.create("services", service("svc-late"));
    api.store.compact();
  }, (r) => r.params.has("continue"));
  const services = h.services({ limit: 20 });
  await services.start();
  deepEqual(
    api.requests.filter(isList(SERVICES)).map((r) => [r.params.has("continue"), r.status]),
    [[false, 200], [true, 410], [false, 200], [true, 200]],
  );
  deepEqual(informerState(services), serverState(api, "services"));
});

Deno.test("a wrong token: 401 surfaces as 'error' with code 401, and no URL carries a token", async () => {
  await using h = await Harness.start({}, { token: "not-the-token" });
  const services = h.services();
  await services.start();
  const [error] = services.errors();
  ok(error instanceof k8s.ApiException, `an ApiException, not ${error}`);
  equal(error.code, 401);
  // The generated client drops the Status body of a 401: only the code and message remain.
  ok(error.message.startsWith("HTTP-Code: 401\nMessage: Unauthorized"), error.message);
  deepEqual(services.events.map((e) => e.type), ["connect", "error"]);
  const urls = h.api.requests.entries.map((r) => r.url);
  ok(urls.every((u) => !u.includes(h.api.token) && !u.includes("not-the-token")), urls.join(" "));
});

Deno.test("a watch that hangs silently is abandoned after the inactivity timeout and resumed", async () => {
  await using h = await Harness.start();
  const { api } = h;
  api.store.create("services", service("svc-000"));
  const services = h.services({ inactivityTimeoutMs: 600 });
  await services.start();
  const mark = api.requests.mark();
  api.hangWatches().remove(); // the open watch hangs; new ones are fine
  api.store.create("services", service("svc-001"));

  await services.until(
    () => services.count("add") === 2,
    "the add, after the client gave up on the hung watch",
  );
  const hung = api.requests.entries.find((r) => r.watch && r.watchEnd === "cancelled");
  ok(hung, "the client aborted the hung watch");
  equal(api.requests.count(isList(SERVICES), mark), 0, "no relist");
  equal(services.errors().length, 0);
});

Deno.test("with bookmarks a quiet watch keeps up with the resourceVersion, so a resume after compaction needs no relist", async () => {
  await using h = await Harness.start({ bookmarkIntervalMs: 100 });
  const { api } = h;
  api.store.create("nodes", node("node-a"));
  const withBookmarks = h.node("node-a", { bookmarks: true });
  const without = h.node("node-a");
  await Promise.all([withBookmarks.start(), without.start()]);
  ok(
    api.requests.filter(isWatch(NODES)).some((r) => r.params.get("allowWatchBookmarks") === "true"),
  );
  ok(
    api.requests.filter(isWatch(NODES)).some((r) => !r.params.has("allowWatchBookmarks")),
    "ListWatch alone does not ask",
  );

  for (let i = 0; i < 20; i++) api.store.create("services", service(`svc-${pad(i)}`));
  const target = api.store.resourceVersion;
  await withBookmarks.until(
    () => withBookmarks.informer.latestResourceVersion() === target,
    `resourceVersion ${target} from a bookmark`,
  );
  ok(withBookmarks.count("bookmark") > 0);
  equal(
    without.informer.latestResourceVersion(),
    api.store.get("nodes", "node-a")?.metadata.resourceVersion,
  );
  api.store.compact();
  const mark = api.requests.mark();
  api.closeWatches(NODES);
  await api.requests.waitFor(isList(NODES), {
    after: mark,
    what: "the relist of the informer without bookmarks",
  });
  await api.requests.waitFor(
    (r) => isWatch(NODES)(r) && r.params.get("resourceVersion") === target,
    {
      after: mark,
      what: "the bookmarked informer resuming at the bookmark",
    },
  );
  equal(api.requests.count(isList(NODES), mark), 1, "only the informer without bookmarks relisted");
  deepEqual(withBookmarks.keys(), ["node-a"]);
  deepEqual(without.keys(), ["node-a"]);
});

Deno.test("500 on a watch and a server restart surface as 'error'; start() recovers, also from lost state", async () => {
  await using h = await Harness.start();
  const { api } = h;
  for (let i = 0; i < 5; i++) api.store.create("services", service(`svc-${pad(i)}`));
  const services = h.services();
  await services.start();

  api.failNext(1, { match: (r) => r.watch });
  api.closeWatches();
  await services.until(() => services.errors().length === 1, "the error of the 500");
  equal((services.errors()[0] as { statusCode?: number }).statusCode, 500);

  await api.stop();
  await services.start();
  // A refused connection, or the pooled connection the stop closed.
  const refused = services.errors()[1] as Error & { cause?: { code?: string } };
  ok(["ECONNREFUSED", "UND_ERR_SOCKET"].includes(refused?.cause?.code ?? ""), String(refused));

  await api.restart();
  api.store.create("services", service("svc-new"));
  await services.start();
  await services.until(() => services.count("add") === 6, "the add made while the server was down");

  const mark = api.requests.mark();
  await api.restart({ keepState: false });
  await services.until(
    () => services.errors().length === 3,
    "the error of the watch cut by the restart",
  );
  await services.start();
  await services.until(
    () => services.keys().length === 0,
    "the relist after 410 to empty the cache",
  );
  equal(services.count("delete"), 6);
  equal(api.requests.count(isList(SERVICES), mark), 1);
});

Deno.test("ListWatch.stop() leaves a still-connecting watch open; StoppableWatch aborts it", async () => {
  await using h = await Harness.start();
  const { api } = h;
  using _ = api.faults.delay(300, (r) => r.watch);
  const core = h.kc.makeApiClient(k8s.CoreV1Api);
  const list = () => core.listServiceForAllNamespaces();

  /** Starts `informer`, stops it while its watch waits for headers; returns that watch's record. */
  async function stopWhileConnecting(stop: () => Promise<void>, start: () => Promise<void>) {
    const mark = api.requests.mark();
    const started = start();
    // The watch has arrived and waits out its latency: the client awaits its headers.
    const watch = await api.requests.waitFor((r) => r.watch && r.status === 0, {
      after: mark,
      what: "the watch request",
    });
    await stop();
    await started;
    await api.requests.waitFor((r) => r.seq === watch.seq && r.status === 200, {
      what: "the delayed watch answer",
    });
    return watch;
  }

  const plain = new k8s.ListWatch(SERVICES, new k8s.Watch(h.kc), list, false);
  const leaked = await stopWhileConnecting(() => plain.stop(), () => plain.start());
  equal(leaked.watchEnd, undefined, "still streaming after stop()");
  deepEqual(api.openWatches.map((w) => w.requestSeq), [leaked.seq]);
  api.dropWatches(); // clean up the leak (the stopped ListWatch still reports it as "error")

  const probe = h.services();
  const aborted = await stopWhileConnecting(() => probe.stop(), () => probe.start());
  await api.requests.waitFor((r) => r.seq === aborted.seq && r.watchEnd === "cancelled", {
    what: "StoppableWatch to abort the watch that connected after stop",
  });
  deepEqual(probe.errors(), [], "nothing is reported after stop");
});

Deno.test("Deno's node:stream isReadable still fails on web streams (why _api_client_stream_fix.ts exists)", () => {
  ok(
    denoStreamBugPresent(),
    "Deno fixed node:stream isReadable(ReadableStream): _api_client_stream_fix.ts can go",
  );
});
