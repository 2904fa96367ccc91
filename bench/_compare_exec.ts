/** Running the kernel tools for the comparison benchmark, with typed failures. */

/** A command the comparison needed did not succeed. */
export class BenchCommandError extends Error {
  override name = "BenchCommandError";
  constructor(
    what: string,
    readonly argv: readonly string[],
    readonly code: number,
    stderr: string,
  ) {
    super(
      `Cannot ${what}: ${argv.slice(0, 6).join(" ")} exited ${code}: ${
        stderr.trim().slice(0, 400)
      }`,
    );
  }
}

export interface RunResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** Runs argv (stdin optional); never throws for a non-zero exit. */
export async function run(argv: readonly string[], stdin?: Uint8Array): Promise<RunResult> {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    // A program that exits early makes the write fail; its exit status says why.
    await w.write(stdin).catch(() => {});
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** Runs argv and throws BenchCommandError (saying `what` failed) on a non-zero exit. */
export async function runChecked(
  what: string,
  argv: readonly string[],
  stdin?: Uint8Array,
): Promise<Uint8Array> {
  const r = await run(argv, stdin);
  if (r.code !== 0) throw new BenchCommandError(what, argv, r.code, r.stderr);
  return r.stdout;
}

/** Wall time of a checked run, in milliseconds (process start-up included). */
export async function timeChecked(
  what: string,
  argv: readonly string[],
  stdin?: Uint8Array,
): Promise<number> {
  const t = performance.now();
  await runChecked(what, argv, stdin);
  return performance.now() - t;
}
