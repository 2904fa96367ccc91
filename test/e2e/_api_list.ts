/**
 * GET of a collection: a List with metadata.resourceVersion, filtered by
 * namespace and selectors, paged by `limit` and `continue`. Every page of one
 * list comes from the same snapshot (the token carries its resourceVersion,
 * as the real server's does); a token older than the compacted history gets
 * 410 Expired, with the real server's message.
 * @module
 */
import { parseFieldSelector, parseLabelSelector, type Selector } from "./_api_selectors.ts";
import type { ObjectStore } from "./_api_store.ts";
import {
  failureStatus,
  type KubeObject,
  objectKey,
  type ResourceType,
  statusResponse,
} from "./_api_types.ts";

interface ContinueToken {
  rv: number;
  /** The key of the last object of the previous page. */
  start: string;
}

const EXPIRED_MESSAGE = "The provided continue parameter is too old to display a consistent " +
  "list result. You can start a new list without the continue parameter, or use the continue " +
  "token in this response to retrieve the remainder of the results.";

function encodeToken(token: ContinueToken): string {
  return btoa(JSON.stringify({ v: "meta.k8s.io/v1", ...token }));
}

function decodeToken(text: string): ContinueToken | undefined {
  try {
    const t = JSON.parse(atob(text)) as Partial<ContinueToken>;
    if (typeof t.rv === "number" && typeof t.start === "string") {
      return { rv: t.rv, start: t.start };
    }
  } catch (e) {
    // A token that is not base64 JSON is a client error, answered with 400 below.
    if (!(e instanceof SyntaxError || e instanceof DOMException)) throw e;
  }
  return undefined;
}

/** List items carry no kind/apiVersion: the real server leaves them to the List. */
function asListItem(o: KubeObject): KubeObject {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest as KubeObject;
}

/** The part of a list request the handler reads. */
export interface ListRequest {
  type: ResourceType;
  namespace: string | undefined;
  params: URLSearchParams;
}

/** Answers a list request from the store. Selector errors are the caller's to turn into 400. */
export function handleList(store: ObjectStore, req: ListRequest): Response {
  const { type, namespace, params } = req;
  const limit = Number(params.get("limit") ?? "0");
  if (!Number.isInteger(limit) || limit < 0) {
    return statusResponse(
      failureStatus(400, "BadRequest", `invalid limit "${params.get("limit")}"`),
    );
  }
  const label: Selector = parseLabelSelector(params.get("labelSelector"));
  const field: Selector = parseFieldSelector(params.get("fieldSelector"));

  let rv = Number(store.resourceVersion);
  let start = "";
  const cont = params.get("continue");
  if (cont) {
    const token = decodeToken(cont);
    if (!token) return statusResponse(failureStatus(400, "BadRequest", "invalid continue token"));
    rv = token.rv;
    start = token.start;
  }
  const snapshot = store.snapshotAt(type.name, rv);
  if (!snapshot) return statusResponse(failureStatus(410, "Expired", EXPIRED_MESSAGE));

  const matching = snapshot.filter((o) =>
    (namespace === undefined || o.metadata.namespace === namespace) && label(o) && field(o) &&
    objectKey(o.metadata.name, o.metadata.namespace) > start
  );
  const page = limit > 0 ? matching.slice(0, limit) : matching;
  const remaining = matching.length - page.length;
  const last = page[page.length - 1];
  const metadata: Record<string, unknown> = { resourceVersion: String(rv) };
  if (remaining > 0 && last) {
    metadata["continue"] = encodeToken({
      rv,
      start: objectKey(last.metadata.name, last.metadata.namespace),
    });
    metadata["remainingItemCount"] = remaining;
  }
  return Response.json({
    kind: type.listKind,
    apiVersion: type.apiVersion,
    metadata,
    items: page.map(asListItem),
  });
}
