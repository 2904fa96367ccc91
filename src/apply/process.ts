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
  run(argv: readonly string[], stdin?: Uint8Array): Promise<ProcessResult>;
}

/** Runs commands for real, optionally prefixed (e.g. ["ip", "netns", "exec", "ns1"]). */
export class ProcessRunner implements Runner {
  constructor(readonly prefix: readonly string[] = []) {}

  async run(argv: readonly string[], stdin?: Uint8Array): Promise<ProcessResult> {
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
    if (stdin) {
      const w = child.stdin.getWriter();
      try {
        await w.write(stdin);
      } finally {
        await w.close().catch(() => {/* the process may have exited early; its status tells */});
      }
    }
    const out = await child.output();
    return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
  }
}

export async function runChecked(
  runner: Runner,
  argv: readonly string[],
  stdin?: Uint8Array,
): Promise<Uint8Array> {
  const r = await runner.run(argv, stdin);
  if (r.code !== 0) throw new CommandFailedError(argv, r.code, r.stderr);
  return r.stdout;
}
