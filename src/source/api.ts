/**
 * The Kubernetes API as a source: list+watch (client-node informers) of
 * Services, EndpointSlices and this Node. Only this module imports
 * client-node, and Kubernetes objects leave it as plain JSON.
 *
 * client-node's ListWatch relists by itself after 410 Gone and resumes a
 * watch the server closed cleanly (or that went quiet for 30 s), but a watch
 * cut mid-stream, an API server that is down or answers 5xx, or a failed list
 * stop it with an "error": this source restarts it with exponential backoff
 * (1 s doubling to 30 s, back to 1 s once data flows again), resuming from
 * the last resourceVersion. It does not ask for bookmarks, so the watch
 * client handed to it adds allowWatchBookmarks (bookmarks keep the
 * resourceVersion fresh, so a reconnect rarely needs a relist). Objects are
 * slimmed to the fields kpx reads before the informer caches them: at 10k
 * services that is most of the memory.
 *
 * Lists are fetched page by page by this module (Deno's own fetch, see
 * listFetchFor), and each page's objects are handed over as they arrive.
 *
 * Under Deno, HTTP/2 is turned off (Deno's node:http2 can abort the process
 * when a server resets a stream), and the watch client refuses to open or
 * keep watches once the source is stopped (ListWatch.stop() misses a watch
 * still connecting or one started after a delay in flight). Both found by
 * test/e2e/api_server_test.ts.
 */
// Must come first: patches node:stream before undici (client-node's HTTP
// client) copies from it, or a cut watch leaves the informer silently dead.
import "./deno_stream_fix.ts";
// client-node's informer (ListWatch) and watch client only: its KubeConfig
// and generated API client would add ~50 MB (see kubeconfig.ts).
import { ListWatch } from "@kubernetes/client-node/dist/cache.js";
import { Watch } from "@kubernetes/client-node/dist/watch.js";
import type { KubernetesListObject, KubernetesObject } from "@kubernetes/client-node/dist/types.js";
import { Agent, fetch as undiciFetch } from "undici";
import { type ApiEndpoint, loadApiEndpoint } from "./kubeconfig.ts";
import { parseListItems } from "./list_items.ts";
import type { Logger } from "../log/mod.ts";
import type { SourceHandlers, SourceKind } from "./manifest_dir.ts";

/** kube-proxy's selectors: services of another proxy, and headless services' slices, are not ours. */
export const SERVICE_SELECTOR = "!service.kubernetes.io/service-proxy-name";
export const SLICE_SELECTOR =
  "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
const PAGE_SIZE = 500;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

type Json = Record<string, unknown>;

function pick(o: unknown, keys: readonly string[]): Json | undefined {
  if (typeof o !== "object" || o === null) return undefined;
  const out: Json = {};
  for (const k of keys) {
    const v = (o as Json)[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  return out;
}

const TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time";

function slimMeta(m: unknown): Json {
  const meta = pick(m, ["name", "namespace", "resourceVersion", "labels", "deletionTimestamp"]) ??
    {};
  const ann = (m as Json | undefined)?.["annotations"] as Json | undefined;
  if (ann?.[TRIGGER_TIME]) meta["annotations"] = { [TRIGGER_TIME]: ann[TRIGGER_TIME] };
  return meta;
}

/** Only what src/state reads; the rest (managedFields, targetRefs, ...) is dropped. */
export function slim(kind: SourceKind, o: unknown): Json {
  const src = o as Json;
  const out: Json = { metadata: slimMeta(src["metadata"]) };
  if (kind === "Service") {
    out["spec"] = pick(src["spec"], [
      "type",
      "clusterIP",
      "clusterIPs",
      "externalIPs",
      "ports",
      "externalTrafficPolicy",
      "internalTrafficPolicy",
      "sessionAffinity",
      "sessionAffinityConfig",
      "loadBalancerSourceRanges",
      "healthCheckNodePort",
    ]);
    const lb = ((src["status"] as Json | undefined)?.["loadBalancer"] as Json | undefined)
      ?.["ingress"];
    if (Array.isArray(lb)) {
      out["status"] = { loadBalancer: { ingress: lb.map((i) => pick(i, ["ip", "ipMode"])) } };
    }
  } else if (kind === "EndpointSlice") {
    out["addressType"] = src["addressType"];
    out["ports"] = src["ports"];
    out["endpoints"] = Array.isArray(src["endpoints"])
      ? (src["endpoints"] as unknown[]).map((e) =>
        pick(e, ["addresses", "conditions", "nodeName", "zone", "hints"])
      )
      : [];
  } else {
    out["spec"] = pick(src["spec"], ["podCIDR", "podCIDRs", "taints"]);
    const addrs = (src["status"] as Json | undefined)?.["addresses"];
    out["status"] = { addresses: Array.isArray(addrs) ? addrs : [] };
  }
  return out;
}

/**
 * What an informer's cache keeps of an object once the handlers have taken
 * it: only what ListWatch reads of cached objects (namespace and name to key
 * them and find the deleted ones on a relist, resourceVersion to tell an
 * update), and what a delete event needs. The handlers parse everything else
 * into kpx's own state; the rest would be every endpoint held twice. The
 * object is changed in place: it is the one ListWatch holds.
 * Fields are set to undefined rather than deleted, which would turn the
 * object into a slower and larger dictionary.
 */
export function forgetContent(o: Json): void {
  const m = (o["metadata"] ?? {}) as Json;
  for (const k of Object.keys(o)) o[k] = undefined;
  o["metadata"] = pick(m, ["name", "namespace", "resourceVersion"]);
}

export interface ApiSourceOptions {
  kubeconfig?: string;
  /** Overrides the API server address of the kubeconfig (kube-proxy's --master). */
  master?: string;
  nodeName: string;
  log: Logger;
  handlers: SourceHandlers;
}

interface Resource {
  kind: SourceKind;
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** The two methods client-node's Watch asks of its "KubeConfig". */
function watchConfig(endpoint: ApiEndpoint, dispatcher: Agent) {
  return {
    getCurrentCluster: () => ({
      name: "kpx",
      server: endpoint.server,
      skipTLSVerify: endpoint.insecure,
    }),
    applySecurityAuthentication: async (
      ctx: { setHeaderParam(k: string, v: string): void; setDispatcher(d: unknown): void },
    ) => {
      const token = await endpoint.token();
      if (token) ctx.setHeaderParam("Authorization", `Bearer ${token}`);
      ctx.setDispatcher(dispatcher);
    },
  };
}

export function dispatcherFor(endpoint: ApiEndpoint): Agent {
  return new Agent({
    // HTTP/1.1 only: see the module comment. undici reads it at both levels.
    allowH2: false,
    connect: {
      ...(endpoint.ca ? { ca: endpoint.ca } : {}),
      ...(endpoint.cert ? { cert: endpoint.cert } : {}),
      ...(endpoint.key ? { key: endpoint.key } : {}),
      rejectUnauthorized: !endpoint.insecure,
      allowH2: false,
    } as Record<string, unknown>,
  });
}

/**
 * How list pages are fetched: with Deno's own fetch, which reads a 10k-slice
 * list in ~25 MB less memory than undici over Deno's node:tls (measured: 20
 * pages of 500 slices, RSS +20 MB instead of +45 MB); with undici only where
 * Deno's fetch cannot go, an endpoint whose certificate is not verified
 * (insecure-skip-tls-verify: Deno can skip verification only process-wide).
 * Watches stay with client-node's Watch.
 */
export type ListFetch = (url: string, init: { headers: Record<string, string> }) => Promise<
  { status: number; text(): Promise<string> }
>;

export function listFetchFor(endpoint: ApiEndpoint, dispatcher: Agent): {
  fetch: ListFetch;
  close(): void;
} {
  const signal = () => AbortSignal.timeout(60_000);
  if (endpoint.insecure) {
    return {
      fetch: (url, init) => undiciFetch(url, { ...init, dispatcher, signal: signal() }),
      close: () => {},
    };
  }
  const client = Deno.createHttpClient({
    ...(endpoint.ca ? { caCerts: [endpoint.ca] } : {}),
    ...(endpoint.cert && endpoint.key ? { cert: endpoint.cert, key: endpoint.key } : {}),
  });
  return {
    fetch: (url, init) => fetch(url, { ...init, client, signal: signal() }),
    close: () => client.close(),
  };
}

/**
 * A GET of a list page, its items handed to `onItem` one by one as they are
 * parsed (list_items.ts); returns the rest (metadata). Errors carry the HTTP
 * status as client-node's do (410 -> relist).
 */
async function getListPage(
  endpoint: ApiEndpoint,
  get: ListFetch,
  url: string,
  onItem: (item: unknown) => void,
): Promise<Json> {
  const token = await endpoint.token();
  const res = await get(url, {
    headers: { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  });
  const text = await res.text();
  if (res.status !== 200) {
    let reason = text.slice(0, 200);
    try {
      reason = String((JSON.parse(text) as Json)["message"] ?? reason);
    } catch { /* not JSON: keep the text */ }
    const err = new Error(`GET ${new URL(url).pathname}: HTTP ${res.status}: ${reason}`) as
      & Error
      & { statusCode: number };
    err.statusCode = res.status;
    throw err;
  }
  return parseListItems(text, onItem);
}

interface InformerEntry {
  res: Resource;
  lw: ListWatch<KubernetesObject>;
  synced: boolean;
  backoff: number;
  timer?: ReturnType<typeof setTimeout>;
}

export class ApiSource {
  #opts: ApiSourceOptions;
  #informers: InformerEntry[] = [];
  #stopped = false;
  /** Aborts every watch, including ones ListWatch starts after stop(). */
  #stop = new AbortController();
  #dispatcher: Agent | undefined;
  #lists: { fetch: ListFetch; close(): void } | undefined;
  #synced = false;

  constructor(opts: ApiSourceOptions) {
    this.#opts = opts;
  }

  get synced(): boolean {
    return this.#synced;
  }

  async start(): Promise<void> {
    const endpoint = await loadApiEndpoint(this.#opts);
    const dispatcher = dispatcherFor(endpoint);
    this.#dispatcher = dispatcher;
    const lists = listFetchFor(endpoint, dispatcher);
    this.#lists = lists;
    const signal = this.#stop.signal;
    const realWatch = new Watch(
      watchConfig(endpoint, dispatcher) as unknown as ConstructorParameters<typeof Watch>[0],
    );
    const resources: Resource[] = [
      { kind: "Service", path: "/api/v1/services", labelSelector: SERVICE_SELECTOR },
      {
        kind: "EndpointSlice",
        path: "/apis/discovery.k8s.io/v1/endpointslices",
        labelSelector: SLICE_SELECTOR,
      },
      {
        kind: "Node",
        path: "/api/v1/nodes",
        fieldSelector: `metadata.name=${this.#opts.nodeName}`,
      },
    ];
    for (const res of resources) {
      const entry = { res, synced: false, backoff: BACKOFF_START_MS } as InformerEntry;
      // The watch client ListWatch uses: asks for bookmarks, slims objects,
      // counts progress (for the backoff), and stays closed after stop().
      const watch = {
        watch: async (
          path: string,
          query: Record<string, unknown>,
          cb: (phase: string, o: unknown, w: unknown) => void,
          done: (err: unknown) => void,
        ) => {
          if (signal.aborted) return new AbortController();
          let finished = false;
          const controller = await realWatch.watch(
            path,
            { ...query, allowWatchBookmarks: true },
            (phase: string, o: unknown, w: unknown) => {
              if (signal.aborted) return;
              entry.backoff = BACKOFF_START_MS;
              if (phase === "BOOKMARK" || phase === "ERROR") cb(phase, o, w);
              else cb(phase, slim(res.kind, o), w);
            },
            (err: unknown) => {
              finished = true;
              signal.removeEventListener("abort", abort);
              // After stop, the abort is not news: ListWatch would report it as an error.
              if (!signal.aborted) done(err);
            },
          );
          const abort = () => controller.abort();
          if (signal.aborted) controller.abort();
          else if (!finished) signal.addEventListener("abort", abort, { once: true });
          return controller;
        },
      } as unknown as Watch;
      // Objects a list has already handed to the handlers: ListWatch's own
      // add/update events for them only need to put them in its cache.
      const delivered = new WeakSet<object>();
      const listFn = async () => {
        // Paginated, one page in memory at a time, and each item parsed on
        // its own: it goes to the handlers as it is parsed (unless the cache
        // has that version already: ListWatch would not report it either),
        // then only its identity is kept for ListWatch, which diffs the
        // whole list with its cache (deletes) once this returns, instead of
        // every listed object whole until then.
        const items: Json[] = [];
        let cont: string | undefined;
        let rv = "";
        do {
          const url = new URL(endpoint.server.replace(/\/$/, "") + res.path);
          if (res.labelSelector) url.searchParams.set("labelSelector", res.labelSelector);
          if (res.fieldSelector) url.searchParams.set("fieldSelector", res.fieldSelector);
          url.searchParams.set("limit", String(PAGE_SIZE));
          if (cont) url.searchParams.set("continue", cont);
          const page = await getListPage(endpoint, lists.fetch, url.toString(), (it) => {
            const o = slim(res.kind, it);
            const m = o["metadata"] as Json;
            const cached = entry.lw.get(
              String(m["name"] ?? ""),
              m["namespace"] as string | undefined,
            )
              ?.metadata;
            const version = m["resourceVersion"];
            if (version === undefined || version === null || cached?.resourceVersion !== version) {
              this.#opts.handlers.event(res.kind, "upsert", o);
              delivered.add(o);
            }
            forgetContent(o);
            items.push(o);
          });
          const meta = (page["metadata"] ?? {}) as Json;
          rv ||= String(meta["resourceVersion"] ?? "");
          cont = (meta["continue"] as string | undefined) || undefined;
        } while (cont);
        // ListWatch delivers these items after this function returns (in a
        // microtask); "listed" must come after them, or the first sync could
        // see a partial picture: a macrotask runs after all microtasks.
        setTimeout(() => this.#listed(entry), 0);
        return {
          apiVersion: "v1",
          kind: "List",
          items,
          metadata: { resourceVersion: rv },
        } as unknown as KubernetesListObject<KubernetesObject>;
      };
      const lw = new ListWatch<KubernetesObject>(
        res.path,
        watch,
        listFn,
        false,
        res.labelSelector,
        res.fieldSelector,
      );
      entry.lw = lw;
      const upsert = (o: KubernetesObject) => {
        if (delivered.delete(o)) return;
        this.#opts.handlers.event(res.kind, "upsert", o as unknown as Json);
        forgetContent(o as unknown as Json);
      };
      lw.on("add", upsert);
      lw.on("update", upsert);
      lw.on("delete", (o) => this.#opts.handlers.event(res.kind, "delete", o as unknown as Json));
      lw.on("error", (err) => this.#failed(entry, err));
      this.#informers.push(entry);
    }
    for (const e of this.#informers) this.#start(e);
  }

  #start(e: InformerEntry): void {
    if (this.#stopped) return;
    e.lw.start().catch((err) => this.#failed(e, err));
  }

  #listed(e: InformerEntry): void {
    e.backoff = BACKOFF_START_MS;
    if (e.synced) return;
    e.synced = true;
    this.#opts.log.info("Listed", { resource: e.res.kind }, 2);
    if (!this.#synced && this.#informers.every((i) => i.synced)) {
      this.#synced = true;
      this.#opts.handlers.synced();
    }
  }

  #failed(e: InformerEntry, err: unknown): void {
    if (this.#stopped) return;
    const error = err instanceof Error
      ? err
      : new Error(String((err as { message?: string })?.message ?? err));
    this.#opts.handlers.error(
      new Error(
        `Cannot watch ${e.res.kind}s (retrying in ${e.backoff / 1000} s): ${error.message}`,
        { cause: err },
      ),
    );
    clearTimeout(e.timer);
    e.timer = setTimeout(() => this.#start(e), e.backoff);
    e.backoff = Math.min(e.backoff * 2, BACKOFF_MAX_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stop.abort();
    for (const e of this.#informers) {
      clearTimeout(e.timer);
      await e.lw.stop();
    }
    // Only after the watches are gone: destroying the pool cuts connections.
    await this.#dispatcher?.destroy();
    this.#lists?.close();
  }
}
