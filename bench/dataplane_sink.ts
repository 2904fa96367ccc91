/**
 * The backends of the data-plane benchmark: one process in the backend
 * namespace accepting on 0.0.0.0:<port> (every endpoint address is local there
 * through an AnyIP route) and closing each connection at once. Prints "ready"
 * when listening; runs until killed.
 *
 *   ip netns exec NS deno run --no-config --allow-ffi bench/dataplane_sink.ts 8080
 * @module
 */
import {
  acceptSocket,
  closeSocket,
  EAGAIN,
  listenSocket,
  POLLIN,
  PollTable,
} from "./_socket_ffi.ts";

const port = Number(Deno.args[0] ?? "8080");
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  throw new RangeError(`Cannot start the sink: port must be 1-65535, got ${Deno.args[0]}`);
}
// A deep accept queue: the client opens connections in bursts of its concurrency.
const fd = listenSocket(port, 65535);
console.log("ready");
const table = new PollTable(1);
table.add(fd, POLLIN);
for (;;) {
  if (table.wait(1000) === 0) continue;
  for (;;) {
    const conn = acceptSocket(fd);
    if (conn === -EAGAIN) break;
    // Another error (e.g. ECONNABORTED: reset while queued) loses only that connection.
    if (conn >= 0) closeSocket(conn);
  }
}
