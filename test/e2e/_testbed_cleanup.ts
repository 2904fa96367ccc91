/**
 * Last-resort cleanup of live testbeds when the process is interrupted (SIGINT, SIGTERM), dies
 * of an uncaught error, or unloads without having closed them. Normal teardown is `await testbed.close()`; this only
 * covers the paths where that never runs.
 *
 * Listeners are installed while at least one testbed is live and removed with the last one:
 * a signal listener is a pending op, and Deno's test sanitizer would report it as a leak.
 * @module
 */

/** Something that can tear itself down synchronously (kill children, delete namespaces). */
export interface EmergencyCleanup {
  cleanupSync(): void;
}

const live = new Set<EmergencyCleanup>();
const SIGNALS = ["SIGINT", "SIGTERM"] as const;
type CleanupSignal = typeof SIGNALS[number];
const EXIT_CODES: Record<CleanupSignal, number> = { SIGINT: 130, SIGTERM: 143 };

function cleanupAll(): void {
  for (const item of [...live]) {
    live.delete(item);
    try {
      item.cleanupSync();
    } catch (error) {
      console.error("kpx testbed: emergency cleanup failed:", error);
    }
  }
}

const signalHandlers = new Map<CleanupSignal, () => void>(
  SIGNALS.map((signal) => [signal, () => {
    cleanupAll();
    removeListeners();
    // Registering a listener replaced the default action (terminate); without exiting here
    // the interrupted process would carry on. This is the one place the library exits.
    Deno.exit(EXIT_CODES[signal]);
  }]),
);

/**
 * "unload" covers a normal end and Deno.exit(); "error" and "unhandledrejection" cover a
 * crash, after which the process ends without unload. We never preventDefault: the process
 * still fails as it would have.
 */
const PROCESS_END_EVENTS = ["unload", "error", "unhandledrejection"] as const;

function onProcessEnd(): void {
  cleanupAll();
}

function addListeners(): void {
  for (const [signal, handler] of signalHandlers) Deno.addSignalListener(signal, handler);
  for (const event of PROCESS_END_EVENTS) globalThis.addEventListener(event, onProcessEnd);
}

function removeListeners(): void {
  for (const [signal, handler] of signalHandlers) Deno.removeSignalListener(signal, handler);
  for (const event of PROCESS_END_EVENTS) globalThis.removeEventListener(event, onProcessEnd);
}

/** Cleans `item` up if the process is interrupted before `untrack(item)`. */
export function track(item: EmergencyCleanup): void {
  if (live.size === 0) addListeners();
  live.add(item);
}

export function untrack(item: EmergencyCleanup): void {
  if (!live.delete(item)) return;
  if (live.size === 0) removeListeners();
}
