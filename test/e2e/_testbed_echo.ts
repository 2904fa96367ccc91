/**
 * Starting and stopping echo_server.ts inside a namespace.
 * @module
 */

import { describe } from "./_testbed_exec.ts";
import { helperCommands } from "./_testbed_helpers.ts";

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 2_000;
const STDERR_TAIL_CHARS = 4_000;

export interface EchoServerOptions {
  /** One word; the first field of every reply. */
  name: string;
  /** TCP ports to serve. */
  tcpPorts: readonly number[];
  /** UDP ports to serve. */
  udpPorts: readonly number[];
}

/** A running echo server. */
export class EchoServer {
  readonly name: string;
  readonly ns: string;
  readonly tcpPorts: readonly number[];
  readonly udpPorts: readonly number[];
  readonly pid: number;
  #child: Deno.ChildProcess;
  #exited = false;
  #status: Promise<Deno.CommandStatus>;
  #drained: Promise<void>;

  private constructor(
    ns: string,
    options: EchoServerOptions,
    child: Deno.ChildProcess,
    drained: Promise<void>,
  ) {
    this.name = options.name;
    this.ns = ns;
    this.tcpPorts = [...options.tcpPorts];
    this.udpPorts = [...options.udpPorts];
    this.pid = child.pid;
    this.#child = child;
    this.#drained = drained;
    this.#status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
  }

  /** Starts the server in `ns` and waits until every port is bound. */
  static async start(ns: string, options: EchoServerOptions): Promise<EchoServer> {
    const what = `echo server ${options.name} in ${ns}`;
    const args = [
      "netns",
      "exec",
      ns,
      ...helperCommands().echoServer,
      "--name",
      options.name,
      "--tcp",
      options.tcpPorts.join(","),
      "--udp",
      options.udpPorts.join(","),
    ];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("ip", {
        args,
        stdin: "piped", // Held open: the server exits when it closes (also if we crash).
        stdout: "piped",
        stderr: "piped",
        env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
      }).spawn();
    } catch (error) {
      throw new Error(`Cannot start ${what}: ${describe(error)}`, { cause: error });
    }
    let stderrTail = "";
    const stderrDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(chunk) {
          stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
        },
      }),
    );
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const ready = readReadyLine(lines);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), READY_TIMEOUT_MS);
    });
    const outcome = await Promise.race([ready, timeout]);
    clearTimeout(timer);
    // Keep reading stdout so the server can never block on a full pipe.
    const stdoutDone = drain(lines);
    const drained = Promise.all([stderrDone, stdoutDone]).then(() => {});
    const server = new EchoServer(ns, options, child, drained);
    if (outcome !== true) {
      await server.stop();
      const reason = outcome === "timeout"
        ? `not ready after ${READY_TIMEOUT_MS} ms`
        : "exited before it was ready";
      throw new Error(`Cannot start ${what}: ${reason}; stderr: ${stderrTail.trim() || "(empty)"}`);
    }
    return server;
  }

  /** Stops the server: closes its stdin, then SIGTERM, then SIGKILL after a grace period. */
  async stop(): Promise<void> {
    await this.#child.stdin.close().catch(() => {/* already closed */});
    this.#signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), STOP_GRACE_MS);
    });
    if (await Promise.race([this.#status, late]) === "late") this.#signal("SIGKILL");
    clearTimeout(timer);
    await this.#status;
    await this.#drained;
  }

  /** For signal-time cleanup: no awaiting possible. */
  killSync(): void {
    this.#signal("SIGKILL");
  }

  #signal(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch (error) {
      // "already terminated" races with our exit bookkeeping; anything else is real.
      if (!(error instanceof TypeError)) throw error;
    }
  }
}

/** Resolves true at the `{"ready":true}` line, false if stdout ends first. */
async function readReadyLine(reader: ReadableStreamDefaultReader<string>): Promise<boolean> {
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffered += value;
    for (const line of buffered.split("\n").slice(0, -1)) {
      if (line.startsWith('{"ready":true')) return true;
    }
  }
}

async function drain(reader: ReadableStreamDefaultReader<string>): Promise<void> {
  for (;;) {
    const { done } = await reader.read();
    if (done) return;
  }
}
