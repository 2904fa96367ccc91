/**
 * Running the kernel tools (nft, conntrack, ipvsadm). Only src/apply/ starts
 * processes. A command prefix lets tests run the same code inside a network
 * namespace (`ip netns exec NS`); the daemon itself runs with none.
 */

export interface ProcessResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

export class CommandFailedError extends Error {
  override name = "CommandFailedError";
  constructor(readonly argv: readonly string[], readonly code: number, readonly stderr: string) {
    super(
      `Cannot run ${argv.join(" ")}: exit status ${code}${
        stderr ? `: ${stderr.trim().split("\n").slice(0, 4).join("; ")}` : ""
      }`,
    );
  }
}

export interface Runner {
  /** stdin: bytes, or pieces written one after another (a batch in chunks). */
  run(argv: readonly string[], stdin?: Uint8Array | readonly Uint8Array[]): Promise<ProcessResult>;
}

/** Runs commands for real, optionally prefixed (e.g. ["ip", "netns", "exec", "ns1"]). */
export class ProcessRunner implements Runner {
  constructor(readonly prefix: readonly string[] = []) {}

  async run(
    argv: readonly string[],
    stdin?: Uint8Array | readonly Uint8Array[],
  ): Promise<ProcessResult> {
    const full = [...this.prefix, ...argv];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(full[0]!, {
        args: full.slice(1),
        stdin: stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new CommandFailedError(full, 127, `${full[0]} is not installed`);
      }
      throw e;
    }
    // Read as the child writes (a full pipe would stall it), and by iterating
    // the streams: child.output() leaves ~70 KiB of native memory per pipe
    // that only a garbage collection frees, and a daemon whose JavaScript
    // makes little garbage grew by ~0.5 MB per sync that way.
    const stdout = readAll(child.stdout);
    const stderr = readAll(child.stderr);
    if (stdin) {
      const w = child.stdin.getWriter();
      try {
        for (const piece of stdin instanceof Uint8Array ? [stdin] : stdin) await w.write(piece);
        await w.close();
      } catch {
        // The process exited before reading all of it: its status and stderr say why.
      }
    }
    const [out, err, status] = await Promise.all([stdout, stderr, child.status]);
    return { code: status.code, stdout: out, stderr: new TextDecoder().decode(err) };
  }
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    size += chunk.length;
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export async function runChecked(
  runner: Runner,
  argv: readonly string[],
  stdin?: Uint8Array | readonly Uint8Array[],
): Promise<Uint8Array> {
  const r = await runner.run(argv, stdin);
  if (r.code !== 0) throw new CommandFailedError(argv, r.code, r.stderr);
  return r.stdout;
}
