/**
 * Workaround for a Deno 2.9.6 node-compat bug that leaves client-node's
 * informers silently dead. Import this module BEFORE anything that imports
 * npm:@kubernetes/client-node (ES modules evaluate in import order): undici
 * copies `isReadable` out of node:stream when it loads.
 *
 * The bug: Deno's `require("node:stream").isReadable(webStream)` returns null
 * for a WHATWG ReadableStream (Node.js returns true while it is readable).
 * undici's fetch (client-node's HTTP layer) calls it before erroring a
 * response body, so when a connection is cut mid-body, or the request is
 * aborted, the body stream never ends nor errors. client-node's Watch then
 * never calls `done`: a dropped watch or the Watch's own 30 s inactivity
 * timeout leaves the informer waiting forever, with no event and no error.
 *
 * The fix answers true for a web ReadableStream. That is safe for what undici
 * does next: `controller.error()` on a stream that is already closed or
 * errored is a no-op by the Streams spec. (undici also cancels a request's
 * own body stream on abort; kpx only sends GETs, which have none.)
 * @module
 */
import stream from "node:stream";

type IsReadable = (s: unknown) => boolean | null;
const nodeStream = stream as unknown as { isReadable: IsReadable };
const original = nodeStream.isReadable;

/** True when node:stream's isReadable already answers true for a readable web stream. */
export function denoStreamBugPresent(): boolean {
  return original(new ReadableStream()) !== true;
}

if (denoStreamBugPresent()) {
  nodeStream.isReadable = (s) => s instanceof ReadableStream ? true : original(s);
}
