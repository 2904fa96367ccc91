export { type Clock, FakeClock, realClock } from "./clock.ts";
export { Daemon, type DaemonOptions } from "./daemon.ts";
export { Ingest, type PendingChange } from "./ingest.ts";
export { SyncLoop, type SyncLoopOptions, type SyncRequest, type SyncResult } from "./sync_loop.ts";
