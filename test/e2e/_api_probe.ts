/**
 * Test-side view of a client-node informer: records what it reports (add,
 * update, delete, error, connect) and lets a test await a state instead of
 * sleeping. Built on the workarounds of ./_api_client.ts.
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { StoppableWatch } from "./_api_client.ts";
import { ChangeNotifier, waitUntil } from "./_api_wait.ts";

/** One page of a list call, as the generated API clients return it. */
export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string };
}

/**
 * A ListWatch list function that reads every page. A continue token that
 * expired (410) restarts the list from the first page, as client-go's pager
 * does: ListWatch leaves that to the list function and would stop with "error".
 */
export function paginatedList<T extends k8s.KubernetesObject>(
  page: (cont: string | undefined) => Promise<ListPage<T>>,
): () => Promise<k8s.KubernetesListObject<T>> {
  return async () => {
    for (let attempt = 1;; attempt++) {
      const items: T[] = [];
      let resourceVersion = "";
      let cont: string | undefined;
      try {
        do {
          const p = await page(cont);
          items.push(...p.items);
          resourceVersion ||= p.metadata?.resourceVersion ?? "";
          cont = p.metadata?._continue || undefined;
        } while (cont);
        return { apiVersion: "v1", kind: "List", metadata: { resourceVersion }, items };
      } catch (e) {
        const expired = cont !== undefined && (e as { code?: unknown }).code === 410;
        if (!expired || attempt >= 3) throw e;
      }
    }
  };
}

export interface ProbeOptions {
  labelSelector?: string;
  fieldSelector?: string;
  bookmarks?: boolean;
  inactivityTimeoutMs?: number;
}

/** What the informer reported, in order. */
export interface ProbeEvent {
  /** "bookmark": a BOOKMARK event arrived (ListWatch itself reports none). */
  type: "add" | "update" | "delete" | "error" | "connect" | "bookmark";
  /** namespace/name for object events. */
  key?: string;
  resourceVersion?: string;
  error?: unknown;
}

function keyOf(o: k8s.KubernetesObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : `${m.name}`;
}

/** An informer (ListWatch) with a log of what it reported. */
export class InformerProbe<T extends k8s.KubernetesObject> {
  readonly informer: k8s.ListWatch<T>;
  readonly events: ProbeEvent[] = [];
  #changes = new ChangeNotifier();
  #stop = new AbortController();

  constructor(
    kc: k8s.KubeConfig,
    path: string,
    list: () => Promise<k8s.KubernetesListObject<T>>,
    options: ProbeOptions = {},
  ) {
    const watch = new StoppableWatch(kc, {
      signal: this.#stop.signal,
      onEvent: (phase) => {
        if (phase === "BOOKMARK") this.#record({ type: "bookmark" });
      },
      ...(options.bookmarks !== undefined ? { bookmarks: options.bookmarks } : {}),
      ...(options.inactivityTimeoutMs !== undefined
        ? { inactivityTimeoutMs: options.inactivityTimeoutMs }
        : {}),
    });
    this.informer = new k8s.ListWatch<T>(
      path,
      watch.asWatch(),
      list,
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    for (const type of ["add", "update", "delete"] as const) {
      this.informer.on(
        type,
        (o) =>
          this.#record({ type, key: keyOf(o), resourceVersion: o.metadata?.resourceVersion ?? "" }),
      );
    }
    this.informer.on("error", (error) => this.#record({ type: "error", error }));
    this.informer.on("connect", () => this.#record({ type: "connect" }));
  }

  /** Lists, then opens the watch; resolves once the watch's headers arrived (or it failed). */
  start(): Promise<void> {
    return this.informer.start();
  }

  /** Stops for good: the watch is aborted even while connecting, and nothing is reported after. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.informer.stop();
  }

  /** namespace/name of every cached object, sorted. */
  keys(): string[] {
    return this.informer.list().map(keyOf).sort();
  }

  count(type: ProbeEvent["type"], after = 0): number {
    return this.events.slice(after).filter((e) => e.type === type).length;
  }

  errors(after = 0): unknown[] {
    return this.events.slice(after).filter((e) => e.type === "error").map((e) => e.error);
  }

  /** Awaits a state of the informer, re-checked after each event it reports. */
  until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return waitUntil(this.#changes, () => (check() ? true : undefined), { what, timeoutMs })
      .then(() => {});
  }

  #record(event: ProbeEvent): void {
    this.events.push(event);
    this.#changes.changed();
  }
}
