/**
 * npm:@kubernetes/client-node 2.0.1 made to work under Deno 2.9.6: the
 * smallest set of workarounds found by test/e2e/api_server_test.ts (whose
 * header explains each). The daemon's src/source/api.ts needs the same.
 *
 * 1. `./_api_client_stream_fix.ts`, imported first: without it a dropped or
 *    timed-out watch leaves the informer silently dead.
 * 2. `DenoKubeConfig`: HTTP/1.1 only (Deno's node:http2 aborts the whole
 *    process on a server GOAWAY or a reset stream), and one shared undici
 *    dispatcher that `close()` releases (client-node makes a new connection
 *    pool per request and never closes any).
 * 3. `StoppableWatch`: ListWatch.stop() does not stop a watch that is still
 *    connecting, nor one started after a list or a backoff delay in flight;
 *    this watch refuses to start after stop, aborts late ones, keeps `done`
 *    quiet after stop, can ask for bookmarks and set the inactivity timeout.
 * @module
 */
import "./_api_client_stream_fix.ts";
import * as k8s from "@kubernetes/client-node";

type Dispatcher = NonNullable<ReturnType<k8s.RequestContext["getDispatcher"]>>;

/** A KubeConfig whose requests use HTTP/1.1 over one connection pool, closed by `close()`. */
export class DenoKubeConfig extends k8s.KubeConfig {
  #dispatcher: Dispatcher | undefined;

  /** Adds undici's `allowH2: false` to the connect options (it is read from there too). */
  override createDispatcherOptions(
    cluster: k8s.Cluster | null,
    agentOptions: Parameters<k8s.KubeConfig["createDispatcherOptions"]>[1],
  ): k8s.DispatcherOptions {
    const options = super.createDispatcherOptions(cluster, agentOptions);
    const http1 = { allowH2: false } as k8s.ConnectOptions;
    if (options.type === "agent") return { ...options, connect: { ...options.connect, ...http1 } };
    // No TLS options (a server with a publicly trusted certificate): still an HTTP/1.1 agent.
    if (options.type === "none") return { type: "agent", connect: http1 };
    return options;
  }

  /**
   * The parent makes a fresh dispatcher for every request; the first one is
   * kept and reused (the others never connect). Token changes still apply:
   * they are headers, set per request.
   */
  override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    this.#dispatcher ??= fresh;
    context.setDispatcher(this.#dispatcher);
  }

  /** Destroys the shared pool: open connections are cut. Stop informers first. */
  async close(): Promise<void> {
    const dispatcher = this.#dispatcher;
    this.#dispatcher = undefined;
    await dispatcher?.destroy();
  }
}

export interface StoppableWatchOptions {
  /** Stops every watch of this object, for good. */
  signal: AbortSignal;
  /** Adds allowWatchBookmarks=true (ListWatch does not ask for bookmarks). */
  bookmarks?: boolean;
  /** client-node's Watch aborts a watch silent this long (default 30,000 ms). */
  inactivityTimeoutMs?: number;
  /** Sees every event type received (BOOKMARK included, which ListWatch reports to no one). */
  onEvent?: (phase: string) => void;
}

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type WatchQuery = Record<string, string | number | boolean | undefined>;

/** The Watch to hand to ListWatch (it is duck-typed: only `watch()` is called). */
export class StoppableWatch {
  #watch: k8s.Watch;
  #options: StoppableWatchOptions;

  constructor(kc: k8s.KubeConfig, options: StoppableWatchOptions) {
    this.#watch = new k8s.Watch(kc);
    this.#options = options;
    if (options.inactivityTimeoutMs !== undefined) {
      // A private field of client-node's Watch: fail loudly if an upgrade renames it.
      const w = this.#watch as unknown as { requestTimeoutMs?: unknown };
      if (typeof w.requestTimeoutMs !== "number") {
        throw new TypeError("Cannot set the watch inactivity timeout: client-node changed");
      }
      w.requestTimeoutMs = options.inactivityTimeoutMs;
    }
  }

  async watch(
    path: string,
    query: WatchQuery,
    callback: WatchCallback,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const { signal, bookmarks } = this.#options;
    if (signal.aborted) return new AbortController();
    let finished = false;
    const abort = (): void => controller.abort();
    const controller = await this.#watch.watch(
      path,
      bookmarks ? { ...query, allowWatchBookmarks: true } : query,
      (phase, obj, w) => {
        if (signal.aborted) return;
        callback(phase, obj, w);
        this.#options.onEvent?.(phase);
      },
      (err) => {
        finished = true;
        signal.removeEventListener("abort", abort);
        // After stop, the abort's AbortError is not news: ListWatch would report it as "error".
        if (!signal.aborted) done(err);
      },
    );
    // Stopped while connecting: ListWatch had no controller to abort yet.
    if (signal.aborted) controller.abort();
    else if (!finished) signal.addEventListener("abort", abort, { once: true });
    return controller;
  }

  /** As ListWatch's constructor types it. */
  asWatch(): k8s.Watch {
    return this as unknown as k8s.Watch;
  }
}
