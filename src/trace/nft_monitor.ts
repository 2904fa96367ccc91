/**
 * `nft monitor` in a namespace: collects the trace events of the probes (and ruleset events).
 *
 * Netlink gives no "subscribed" signal, so sync() adds a marker element to the observer's
 * `ready` set and waits until the monitor prints it: once it has, the monitor is listening, and
 * every event the kernel sent before the marker has been read (one socket, in order).
 * @module
 */

import { describe, runChecked } from "./exec.ts";
import { OBSERVER_TABLE, READY_SET } from "./observer.ts";

const SYNC_ATTEMPT_MS = 150;
const SYNC_ATTEMPTS = 15;
const STOP_TIMEOUT_MS = 2_000;

export class NftMonitor {
  readonly ns: string;
  #child: Deno.ChildProcess;
  #lines: string[] = [];
  #stderr = "";
  #reading: Promise<void>;
  #waiters = new Set<() => void>();
  #nextMarker = 1;
  #exited = false;

  private constructor(ns: string, child: Deno.ChildProcess) {
    this.ns = ns;
    this.#child = child;
    this.#reading = Promise.all([this.#readLines(), this.#readStderr()]).then(() => {});
    child.status.then(() => {
      this.#exited = true;
      this.#wake();
    });
  }

  /** Starts `nft monitor` inside `ns` (an observer table must exist there; see sync()). */
  static start(ns: string): NftMonitor {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("ip", {
        args: ["netns", "exec", ns, "nft", "monitor"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      throw new Error(`Cannot start nft monitor in ${ns}: ${describe(error)}`, { cause: error });
    }
    return new NftMonitor(ns, child);
  }

  /** Lines printed so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /**
   * Adds marker elements until the monitor prints one. Throws when it never does (the monitor
   * exited, or tracing is not available).
   */
  async sync(): Promise<void> {
    for (let attempt = 0; attempt < SYNC_ATTEMPTS; attempt++) {
      if (this.#exited) break;
      const marker = this.#nextMarker++;
      await runChecked(`add a marker to the trace observer in ${this.ns}`, [
        "ip",
        "netns",
        "exec",
        this.ns,
        "nft",
        "add",
        "element",
        "inet",
        OBSERVER_TABLE,
        READY_SET,
        `{ ${marker} }`,
      ]);
      const pattern = new RegExp(`\\b${READY_SET} \\{ ${marker} \\}`);
      if (await this.#waitFor((line) => pattern.test(line), SYNC_ATTEMPT_MS)) return;
    }
    const why = this.#exited
      ? `it exited${this.#stderr.trim() ? `: ${this.#stderr.trim()}` : ""}`
      : `it printed no marker within ${SYNC_ATTEMPTS * SYNC_ATTEMPT_MS} ms`;
    throw new Error(`Cannot follow nftables trace events in ${this.ns}: ${why}`);
  }

  /** Stops the monitor and waits for its output to end. */
  async stop(): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch (error) {
        // Raced with its exit: nothing left to stop.
        if (!(error instanceof TypeError)) throw error;
      }
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
      }
    }, STOP_TIMEOUT_MS);
    try {
      await this.#child.status;
      await this.#reading;
    } finally {
      clearTimeout(timer);
    }
  }

  async #readLines(): Promise<void> {
    let pending = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      if (parts.length > 0) {
        this.#lines.push(...parts);
        this.#wake();
      }
    }
    if (pending !== "") this.#lines.push(pending);
    this.#wake();
  }

  async #readStderr(): Promise<void> {
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.#stderr += chunk;
    }
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** True once a line satisfies `test`, false after `timeoutMs` or when the monitor exits. */
  #waitFor(test: (line: string) => boolean, timeoutMs: number): Promise<boolean> {
    let checked = 0;
    const found = () => {
      for (; checked < this.#lines.length; checked++) {
        if (test(this.#lines[checked]!)) return true;
      }
      return false;
    };
    if (found()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(value);
      };
      const check = () => {
        if (found()) done(true);
        else if (this.#exited) done(false);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#waiters.add(check);
    });
  }
}
