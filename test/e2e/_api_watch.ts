/**
 * One watch request: a chunked stream of newline-delimited JSON events, as the
 * real API server sends them. It replays the history after the requested
 * resourceVersion (or sends the current objects as ADDED when there is none),
 * then follows the store; a resourceVersion older than the history gets one
 * ERROR event with a 410 Expired Status and the end of the stream. Selectors
 * apply to transitions: an object that stops matching is sent as DELETED and
 * one that starts matching as ADDED. Bookmarks carry the store's current
 * resourceVersion.
 * @module
 */
import { parseFieldSelector, parseLabelSelector, type Selector } from "./_api_selectors.ts";
import type { ObjectStore, StoredEvent } from "./_api_store.ts";
import { failureStatus, type KubeObject, type ResourceType, type Status } from "./_api_types.ts";

/** The error a dropped watch's body fails with; the server keeps it out of its error log. */
export class WatchDroppedError extends Error {
  override name = "WatchDroppedError";
}

/** What a BOOKMARK event carries: only the kind and a resourceVersion. */
export interface BookmarkObject {
  kind: string;
  apiVersion: string;
  metadata: { resourceVersion: string };
}

export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: KubeObject | Status | BookmarkObject;
}

/** Why a watch stream ended. */
export type WatchEnd =
  | "closed" // the server ended it cleanly (closeWatches, timeoutSeconds, restart)
  | "dropped" // the server cut it mid-stream (dropWatches, stop)
  | "cancelled" // the client went away
  | "expired"; // its resourceVersion was compacted: ERROR 410 sent, then closed

/** A validated watch request. */
export interface WatchRequest {
  type: ResourceType;
  namespace: string | undefined;
  /** undefined: start with the current objects as ADDED ("" and "0" mean that too). */
  resourceVersion: number | undefined;
  bookmarks: boolean;
  timeoutSeconds: number | undefined;
  label: Selector;
  field: Selector;
}

/** Reads the query of a watch request; throws RangeError/SelectorError for a 400. */
export function parseWatchRequest(
  type: ResourceType,
  namespace: string | undefined,
  params: URLSearchParams,
): WatchRequest {
  const rvText = params.get("resourceVersion") ?? "";
  const rv = rvText === "" || rvText === "0" ? undefined : Number(rvText);
  if (rv !== undefined && (!Number.isInteger(rv) || rv < 0)) {
    throw new RangeError(`invalid resourceVersion "${rvText}"`);
  }
  const timeoutText = params.get("timeoutSeconds");
  const timeoutSeconds = timeoutText === null ? undefined : Number(timeoutText);
  if (timeoutSeconds !== undefined && !(timeoutSeconds >= 0)) {
    throw new RangeError(`invalid timeoutSeconds "${timeoutText}"`);
  }
  return {
    type,
    namespace,
    resourceVersion: rv,
    bookmarks: params.get("allowWatchBookmarks") === "true",
    timeoutSeconds,
    label: parseLabelSelector(params.get("labelSelector")),
    field: parseFieldSelector(params.get("fieldSelector")),
  };
}

export interface WatchStreamOptions {
  /** Bookmark period when the client allows bookmarks. */
  bookmarkIntervalMs: number;
  /** Start hung: send nothing at all, keep the connection open. */
  hung: boolean;
  onEnd: (stream: WatchStream, end: WatchEnd) => void;
}

const encoder = new TextEncoder();
let nextWatchId = 1;

/** One open watch: its Response body, and the controls the server's faults use. */
export class WatchStream {
  readonly id = nextWatchId++;
  readonly request: WatchRequest;
  readonly response: Response;
  #store: ObjectStore;
  #options: WatchStreamOptions;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #unsubscribe: (() => void) | undefined;
  #bookmarkTimer: ReturnType<typeof setInterval> | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #hung: boolean;
  #ended: WatchEnd | undefined;

  constructor(store: ObjectStore, request: WatchRequest, options: WatchStreamOptions) {
    this.#store = store;
    this.request = request;
    this.#options = options;
    this.#hung = options.hung;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        this.#begin();
      },
      cancel: () => {
        this.#end("cancelled");
      },
    });
    this.response = new Response(body, {
      headers: { "content-type": "application/json", "cache-control": "no-cache, private" },
    });
  }

  get ended(): WatchEnd | undefined {
    return this.#ended;
  }

  get hung(): boolean {
    return this.#hung;
  }

  /** From now on sends nothing (no events, no bookmarks); the connection stays open. */
  hang(): void {
    this.#hung = true;
  }

  /** Ends the stream cleanly (the terminating chunk is sent), as the server does at its timeout. */
  close(): void {
    if (this.#end("closed")) this.#controller.close();
  }

  /** Cuts the stream mid-body: the connection is reset without the terminating chunk. */
  drop(): void {
    if (this.#end("dropped")) {
      this.#controller.error(new WatchDroppedError(`watch ${this.id} dropped by a test fault`));
    }
  }

  #begin(): void {
    // A stream that starts hung never sends or subscribes: the client sees headers, then silence.
    if (this.#hung) return;
    const { request } = this;
    if (request.resourceVersion === undefined) {
      for (const o of this.#store.list(request.type.name)) {
        if (this.#selects(o)) this.#send({ type: "ADDED", object: o });
      }
    } else {
      const replay = this.#store.eventsAfter(request.resourceVersion);
      if (!replay) {
        const oldest = this.#store.compactedResourceVersion;
        this.#send({
          type: "ERROR",
          object: failureStatus(
            410,
            "Expired",
            `too old resource version: ${request.resourceVersion} (${oldest})`,
          ),
        });
        if (this.#end("expired")) this.#controller.close();
        return;
      }
      for (const e of replay) this.#forward(e);
    }
    // Replay and subscription happen in one synchronous step: no change can fall between.
    this.#unsubscribe = this.#store.subscribe((e) => this.#forward(e));
    if (request.bookmarks) {
      this.#bookmarkTimer = setInterval(() => this.#bookmark(), this.#options.bookmarkIntervalMs);
    }
    if (request.timeoutSeconds !== undefined) {
      this.#deadlineTimer = setTimeout(() => this.close(), request.timeoutSeconds * 1000);
    }
  }

  #selects(o: KubeObject): boolean {
    const { namespace, label, field } = this.request;
    return (namespace === undefined || o.metadata.namespace === namespace) && label(o) &&
      field(o);
  }

  /** Turns a store change into what this watcher sees, selectors' transitions included. */
  #forward(e: StoredEvent): void {
    if (e.resource !== this.request.type.name) return;
    const before = e.previous !== undefined && this.#selects(e.previous);
    const after = e.type !== "DELETED" && this.#selects(e.object);
    if (after) {
      this.#send({ type: before ? "MODIFIED" : "ADDED", object: e.object });
    } else if (before) {
      // The real server sends the old state, stamped with the new resourceVersion.
      const object = e.type === "DELETED" ? e.object : {
        ...e.previous!,
        metadata: { ...e.previous!.metadata, resourceVersion: String(e.resourceVersion) },
      };
      this.#send({ type: "DELETED", object });
    }
  }

  #bookmark(): void {
    const { kind, apiVersion } = this.request.type;
    this.#send({
      type: "BOOKMARK",
      object: { kind, apiVersion, metadata: { resourceVersion: this.#store.resourceVersion } },
    });
  }

  #send(event: WatchEvent): void {
    if (this.#hung || this.#ended) return;
    this.#controller.enqueue(encoder.encode(JSON.stringify(event) + "\n"));
  }

  /** Releases timers and the subscription once; false when the stream had already ended. */
  #end(end: WatchEnd): boolean {
    if (this.#ended) return false;
    this.#ended = end;
    this.#unsubscribe?.();
    clearInterval(this.#bookmarkTimer);
    clearTimeout(this.#deadlineTimer);
    this.#options.onEnd(this, end);
    return true;
  }
}
