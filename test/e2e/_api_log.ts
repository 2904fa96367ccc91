/**
 * What the test API server was asked, in order, so tests can assert on the
 * client's behaviour ("it relisted after 410", "no URL carried the token").
 * @module
 */
import type { ResourceName } from "./_api_types.ts";
import { ChangeNotifier, waitUntil } from "./_api_wait.ts";
import type { WatchEnd } from "./_api_watch.ts";

/** One request as the server saw it; `status` and `watchEnd` are filled in as it goes. */
export interface RequestRecord {
  /** 1, 2, 3... in arrival order. */
  seq: number;
  /** Milliseconds since the server was created. */
  at: number;
  method: string;
  /** The URL path, e.g. /api/v1/services. */
  path: string;
  /** The query parameters as received. */
  params: URLSearchParams;
  /** Path and query exactly as received: what "a token in a URL" would show in. */
  url: string;
  watch: boolean;
  resource: ResourceName | undefined;
  /** The client's address and port: requests with the same one shared a connection. */
  remote: string;
  /** It carried the right bearer token. */
  authorized: boolean;
  /** The HTTP status sent (200 for a watch that streamed); 0 while undecided. */
  status: number;
  /** A fault injected a failure into this request. */
  injectedFailure: boolean;
  /** For a watch: how it ended, once it has. */
  watchEnd?: WatchEnd;
}

/** The requests a server saw, with waiting on future ones. */
export class RequestLog {
  #entries: RequestRecord[] = [];
  #changes = new ChangeNotifier();
  #seq = 0;
  #origin = performance.now();

  /** Every request so far, oldest first. */
  get entries(): readonly RequestRecord[] {
    return this.#entries;
  }

  /** The sequence number of the last request: pass it as `after` to look only at later ones. */
  mark(): number {
    return this.#seq;
  }

  /** Requests matching `predicate` (optionally only those after a mark). */
  filter(predicate: (r: RequestRecord) => boolean, after = 0): RequestRecord[] {
    return this.#entries.filter((r) => r.seq > after && predicate(r));
  }

  count(predicate: (r: RequestRecord) => boolean, after = 0): number {
    return this.filter(predicate, after).length;
  }

  /**
   * Resolves with the first request after `after` (default: any so far) that
   * matches; rejects after `timeoutMs` (default 5 s). Predicates see requests
   * as they arrive (`status` 0) and again as they are answered or end.
   */
  waitFor(
    predicate: (r: RequestRecord) => boolean,
    options: { what: string; after?: number; timeoutMs?: number },
  ): Promise<RequestRecord> {
    const after = options.after ?? 0;
    return waitUntil(
      this.#changes,
      () => this.#entries.find((r) => r.seq > after && predicate(r)),
      { what: options.what, ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) },
    );
  }

  /** Forgets the requests so far (sequence numbers go on). */
  clear(): void {
    this.#entries = [];
  }

  /** @internal The server records a request as it arrives; it updates it and calls `changed`. */
  add(
    record: Omit<RequestRecord, "seq" | "at" | "status" | "injectedFailure">,
  ): RequestRecord {
    const full: RequestRecord = {
      ...record,
      seq: ++this.#seq,
      at: Math.round(performance.now() - this.#origin),
      status: 0,
      injectedFailure: false,
    };
    this.#entries.push(full);
    this.#changes.changed();
    return full;
  }

  /** @internal Wakes waiters after the server updated a record. */
  changed(): void {
    this.#changes.changed();
  }
}
