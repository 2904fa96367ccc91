/**
 * `kpx run` as a child process inside a testbed node's namespace, for the
 * daemon tests and the demo. Its log lines are kept (and parsed: logfmt) so
 * tests can wait for "Synced" with a bounded timeout.
 */
import { V8_FLAGS } from "../../deploy/permissions.ts";

const MAIN = new URL("../../src/main.ts", import.meta.url).pathname;

export interface LogLine {
  raw: string;
  fields: Record<string, string>;
}

function parseLogfmt(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
    out[m[1]!] = m[2]!.startsWith('"') ? JSON.parse(m[2]!) as string : m[2]!;
  }
  return out;
}

export interface KpxProcessOptions {
  /** Namespace to run in (a testbed node's ns). */
  netns: string;
  /** Arguments after `kpx run`. */
  args: string[];
  /** Echo kpx's log lines to stderr (the demo). */
  echo?: (line: LogLine) => void;
  /**
   * A kpx executable (the package, say) to run instead of src/main.ts under
   * this Deno, with this environment added.
   */
  executable?: { path: string; env?: Record<string, string> };
}

/** Flags every test daemon needs: short periods, no global sysctls, local HTTP ports. */
export const TEST_DAEMON_FLAGS = [
  "--min-sync-period=100ms",
  "--sync-period=30s",
  // conntrack table size is global (not per namespace): leave it alone in tests.
  "--conntrack-max-per-core=0",
  "--healthz-bind-address=127.0.0.1:10256",
  "--metrics-bind-address=127.0.0.1:10249",
  "--v=2",
];

/** V8 flags for the child: the shipped ones (deploy/permissions.ts), or KPX_V8_FLAGS to try others. */
function v8Flags(): string[] {
  return [`--v8-flags=${Deno.env.get("KPX_V8_FLAGS") ?? V8_FLAGS}`];
}

export class KpxProcess implements AsyncDisposable {
  readonly lines: LogLine[] = [];
  #child: Deno.ChildProcess;
  #waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  #exit: Promise<Deno.CommandStatus>;

  constructor(opts: KpxProcessOptions) {
    const kpx = opts.executable
      ? [opts.executable.path]
      : [Deno.execPath(), "run", "--allow-all", ...v8Flags(), MAIN];
    this.#child = new Deno.Command("ip", {
      args: ["netns", "exec", opts.netns, ...kpx, "run", ...opts.args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...opts.executable?.env },
    }).spawn();
    this.#exit = this.#child.status;
    const read = async (stream: ReadableStream<Uint8Array>) => {
      let buf = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const raw = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const line = { raw, fields: parseLogfmt(raw) };
          this.lines.push(line);
          opts.echo?.(line);
          this.#waiters = this.#waiters.filter((w) => {
            if (!w.pred(line)) return true;
            w.resolve(line);
            return false;
          });
        }
      }
    };
    read(this.#child.stdout);
    read(this.#child.stderr);
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** The first line (already seen or coming) matching pred, within timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs: number, what = "a log line"): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what}; kpx said:\n${
              this.lines.slice(-15).map((l) => l.raw).join("\n")
            }`,
          ),
        );
      }, timeoutMs);
      const done = (l: LogLine) => {
        clearTimeout(t);
        resolve(l);
      };
      this.#waiters.push({ pred, resolve: done });
    });
  }

  /** Waits for the next successful sync after this call (or matching a generation). */
  nextSync(timeoutMs = 10_000, after = this.lines.length): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (l: LogLine) => l.fields["msg"] === "Synced";
      const found = this.lines.slice(after).find(check);
      if (found) return resolve(found);
      this.waitFor((l) => check(l) && this.lines.indexOf(l) >= after, timeoutMs, "a sync").then(
        resolve,
        reject,
      );
    });
  }

  /** Sends a signal; resolves with the exit status (kills after timeoutMs). */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 10_000): Promise<Deno.CommandStatus> {
    try {
      // `ip netns exec` execs the program: the pid is kpx's own.
      Deno.kill(this.#child.pid, signal);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const t = setTimeout(() => {
      try {
        Deno.kill(this.#child.pid, "SIGKILL");
      } catch { /* already gone */ }
    }, timeoutMs);
    const status = await this.#exit;
    clearTimeout(t);
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL", 1000);
  }
}
