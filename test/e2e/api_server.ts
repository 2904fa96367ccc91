/**
 * A Kubernetes API server for tests, in-process (Deno.serve): TLS with a
 * throwaway CA, bearer-token auth, Services, EndpointSlices and Nodes with
 * list (pagination, selectors) and watch (replay, bookmarks, 410), a store
 * the test drives, injectable faults and a request log. It speaks the real
 * protocol to the real client (npm:@kubernetes/client-node); it is never
 * part of src/.
 *
 * ```ts
 * await using api = await startApiServer();
 * api.store.create("services", { metadata: { name: "web", namespace: "default" } });
 * const path = await writeKubeconfig(dir, api);   // ./kubeconfig.ts
 * api.dropWatches();                               // a fault
 * ```
 * @module
 */
import {
  type FaultHandle,
  FaultPlan,
  type RequestInfo,
  type RequestMatch,
  requestMatches,
} from "./_api_faults.ts";
import { handleList } from "./_api_list.ts";
import { RequestLog, type RequestRecord } from "./_api_log.ts";
import { parseRoute, type Route } from "./_api_routes.ts";
import { SelectorError } from "./_api_selectors.ts";
import { ObjectStore } from "./_api_store.ts";
import { generateTlsMaterial, type TlsMaterial } from "./_api_tls.ts";
import { failureStatus, type ResourceName, statusResponse } from "./_api_types.ts";
import { parseWatchRequest, WatchDroppedError, type WatchEnd, WatchStream } from "./_api_watch.ts";

export type { FaultHandle, RequestInfo, RequestMatch } from "./_api_faults.ts";
export type { RequestRecord } from "./_api_log.ts";
export { RequestLog } from "./_api_log.ts";
export { type ObjectStoreOptions, type StoredEvent, StoreError } from "./_api_store.ts";
export { ObjectStore } from "./_api_store.ts";
export type { TlsMaterial } from "./_api_tls.ts";
export type { KubeObject, ObjectMeta, ResourceName } from "./_api_types.ts";
export { WaitTimeoutError } from "./_api_wait.ts";
export type { WatchEnd } from "./_api_watch.ts";

export interface ApiServerOptions {
  /** The bearer token clients must send. Default: a random one. */
  token?: string;
  /** Port on 127.0.0.1. Default 0: any free port. */
  port?: number;
  /** TLS material to reuse (e.g. across servers); default: a fresh CA and certificate. */
  tls?: TlsMaterial;
  /** Period of BOOKMARK events on watches that allow them. Default 1000 ms (the real one: ~1 min). */
  bookmarkIntervalMs?: number;
  /** Events kept for watch replay and list snapshots. Default 10,000. */
  historyLimit?: number;
  /** The resourceVersion before the first change. Default 1000. */
  initialResourceVersion?: number;
}

/** An open watch, as `openWatches` shows it. */
export interface WatchInfo {
  id: number;
  resource: ResourceName;
  /** The request's seq in the request log. */
  requestSeq: number;
  hung: boolean;
}

/** Starts a server on 127.0.0.1 (TLS). Close it with `close()` or `await using`. */
export async function startApiServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  const tls = options.tls ?? await generateTlsMaterial();
  const server = new ApiServer(tls, options);
  await server.restart();
  return server;
}

interface OpenWatch {
  stream: WatchStream;
  record: RequestRecord;
  info: RequestInfo;
}

/** A running (or stopped, restartable) test API server. */
export class ApiServer implements AsyncDisposable {
  /** The objects; changes are seen by watches at once. Kept across restarts. */
  readonly store: ObjectStore;
  /** Every request, in order. */
  readonly requests: RequestLog = new RequestLog();
  /** Injected failures, latency and hung watches (see also dropWatches/closeWatches). */
  readonly faults: FaultPlan = new FaultPlan();
  /** The bearer token clients must send. */
  readonly token: string;
  /** The CA certificate (PEM) that signed the server's certificate. */
  readonly caPem: string;
  /** Errors the request handler threw (bugs in this server or a broken request), oldest first. */
  readonly errors: unknown[] = [];
  #tls: TlsMaterial;
  #bookmarkIntervalMs: number;
  #port: number;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #watches = new Map<number, OpenWatch>();
  /** Counts stops: a request that outlived one (latency) must not leave a watch streaming. */
  #generation = 0;
  #hooks = new Set<{ hook: (req: RequestInfo) => void; match: RequestMatch | undefined }>();

  /** Use startApiServer(); the constructor does not listen. */
  constructor(tls: TlsMaterial, options: ApiServerOptions = {}) {
    this.#tls = tls;
    this.caPem = tls.caPem;
    this.token = options.token ?? crypto.randomUUID();
    this.#port = options.port ?? 0;
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000;
    this.store = new ObjectStore({
      ...(options.historyLimit !== undefined ? { historyLimit: options.historyLimit } : {}),
      ...(options.initialResourceVersion !== undefined
        ? { initialResourceVersion: options.initialResourceVersion }
        : {}),
    });
  }

  /** The port; the same after a restart. */
  get port(): number {
    return this.#port;
  }

  /** https://127.0.0.1:PORT */
  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  get listening(): boolean {
    return this.#server !== undefined;
  }

  /** The watches streaming now. */
  get openWatches(): WatchInfo[] {
    return [...this.#watches.values()].map(({ stream, record }) => ({
      id: stream.id,
      resource: stream.request.type.name,
      requestSeq: record.seq,
      hung: stream.hung,
    }));
  }

  /** Shorthand for `faults.failNext`: the next `count` requests fail with 500 (or `status`). */
  failNext(count: number, options: { status?: number; match?: RequestMatch } = {}): void {
    this.faults.failNext(count, options);
  }

  /**
   * Runs `hook` as each request (matching `match`) arrives, before it is
   * answered: e.g. compact the store between two pages of a list.
   */
  onRequest(hook: (req: RequestInfo) => void, match?: RequestMatch): FaultHandle {
    const entry = { hook, match };
    this.#hooks.add(entry);
    const remove = (): void => {
      this.#hooks.delete(entry);
    };
    return { remove, [Symbol.dispose]: remove };
  }

  /** Cuts open watches (matching `match`) mid-stream: the connection resets. Returns how many. */
  dropWatches(match?: RequestMatch): number {
    return this.#eachWatch(match, (s) => s.drop());
  }

  /** Ends open watches (matching `match`) cleanly, as the server's own timeout does. */
  closeWatches(match?: RequestMatch): number {
    return this.#eachWatch(match, (s) => s.close());
  }

  /**
   * Makes open watches (matching `match`) go silent, connection kept open, and
   * new ones start silent until the returned handle is removed.
   */
  hangWatches(match?: RequestMatch): FaultHandle {
    this.#eachWatch(match, (s) => s.hang());
    return this.faults.hangNewWatches(match);
  }

  /**
   * Stops listening; open watches are cut mid-stream, as a crashed server's
   * would be. The store, faults and log are kept for a restart.
   */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#generation++;
    this.dropWatches();
    await server.shutdown();
  }

  /**
   * Listens again on the same port (the first call picks it). With
   * `keepState: false` the store is wiped: every client must relist (410).
   */
  async restart(options: { keepState?: boolean } = {}): Promise<void> {
    await this.stop();
    if (options.keepState === false) this.store.wipe();
    const { promise: listening, resolve } = Promise.withResolvers<void>();
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: this.#port,
      cert: this.#tls.certPem,
      key: this.#tls.keyPem,
      onListen: () => resolve(),
      onError: (error) => this.#onError(error),
    }, (req, info) => this.#handle(req, info.remoteAddr));
    await listening;
    this.#port = this.#server.addr.port;
  }

  /** Stops the server and removes every fault. */
  async close(): Promise<void> {
    this.faults.clear();
    this.#hooks.clear();
    await this.stop();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #eachWatch(match: RequestMatch | undefined, act: (s: WatchStream) => void): number {
    const chosen = [...this.#watches.values()].filter((w) => requestMatches(match, w.info));
    for (const { stream } of chosen) act(stream);
    return chosen.length;
  }

  #onError(error: unknown): Response {
    // A dropped watch fails its body on purpose; Deno reports that here.
    if (!(error instanceof WatchDroppedError)) {
      this.errors.push(error);
      console.error("kpx test API server: request failed:", error);
    }
    return statusResponse(failureStatus(500, "InternalError", String(error)));
  }

  async #handle(req: Request, remote: Deno.NetAddr): Promise<Response> {
    const url = new URL(req.url);
    const params = url.searchParams;
    const watch = params.get("watch") === "true" || params.get("watch") === "1";
    const route = parseRoute(url.pathname, `127.0.0.1:${this.#port}`);
    const generation = this.#generation;
    const record = this.requests.add({
      method: req.method,
      path: url.pathname,
      params,
      url: url.pathname + url.search,
      watch,
      remote: `${remote.hostname}:${remote.port}`,
      resource: route && route.kind !== "discovery" ? route.type.name : undefined,
      authorized: req.headers.get("authorization") === `Bearer ${this.token}`,
    });
    const info: RequestInfo = { method: req.method, path: url.pathname, params, watch };
    for (const { hook, match } of [...this.#hooks]) {
      if (requestMatches(match, info)) hook(info);
    }
    const latency = this.faults.latencyFor(info);
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));

    let response: Response;
    let stream: WatchStream | undefined;
    const failure = record.authorized ? this.faults.failureFor(info) : undefined;
    if (!record.authorized) {
      response = statusResponse(failureStatus(401, "Unauthorized", "Unauthorized"));
    } else if (failure !== undefined) {
      record.injectedFailure = true;
      response = statusResponse(
        failureStatus(
          failure,
          reasonFor(failure),
          `injected failure (test fault) for ${url.pathname}`,
        ),
      );
    } else {
      [response, stream] = this.#serve(req, route, info, record);
    }
    record.status = response.status;
    if (stream) this.#watches.set(stream.id, { stream, record, info });
    // Stopped while this request waited out a latency: shutdown() would wait for the stream forever.
    if (stream && generation !== this.#generation) stream.drop();
    this.requests.changed();
    return response;
  }

  #serve(
    req: Request,
    route: Route | undefined,
    info: RequestInfo,
    record: RequestRecord,
  ): [Response, WatchStream?] {
    const { params, watch } = info;
    if (!route) {
      return [
        statusResponse(
          failureStatus(404, "NotFound", "the server could not find the requested resource"),
        ),
      ];
    }
    if (req.method !== "GET") {
      return [
        statusResponse(failureStatus(405, "MethodNotAllowed", `${req.method} is not served`)),
      ];
    }
    try {
      switch (route.kind) {
        case "discovery":
          return [Response.json(route.body)];
        case "object": {
          const o = this.store.get(route.type.name, route.name, route.namespace);
          return [
            o ? Response.json(o) : statusResponse(
              failureStatus(404, "NotFound", `${route.type.name} "${route.name}" not found`, {
                name: route.name,
                kind: route.type.name,
              }),
            ),
          ];
        }
        case "collection": {
          if (!watch) {
            return [
              handleList(this.store, { type: route.type, namespace: route.namespace, params }),
            ];
          }
          const request = parseWatchRequest(route.type, route.namespace, params);
          const stream = new WatchStream(this.store, request, {
            bookmarkIntervalMs: this.#bookmarkIntervalMs,
            hung: this.faults.hangs(info),
            onEnd: (s, end) => this.#watchEnded(s, end, record),
          });
          // A watch that expired at once has already ended: do not track it as open.
          return stream.ended ? [stream.response] : [stream.response, stream];
        }
      }
    } catch (e) {
      if (e instanceof SelectorError || e instanceof RangeError) {
        return [statusResponse(failureStatus(400, "BadRequest", e.message))];
      }
      throw e;
    }
  }

  #watchEnded(stream: WatchStream, end: WatchEnd, record: RequestRecord): void {
    this.#watches.delete(stream.id);
    record.watchEnd = end;
    this.requests.changed();
  }
}

/** The Status reason the real server gives with a status code. */
function reasonFor(code: number): string {
  const reasons: Record<number, string> = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? "InternalError";
}
