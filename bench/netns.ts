/** Throwaway network namespaces for benchmarks: created, used, always deleted. */

let counter = 0;

async function run(
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

export async function withNamespace<T>(fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `kpxb${Deno.pid}x${counter++}`;
  const made = await run("ip", ["netns", "add", ns]);
  if (made.code !== 0) throw new Error(`Cannot create namespace ${ns}: ${made.stderr.trim()}`);
  try {
    return await fn(ns);
  } finally {
    await run("ip", ["netns", "del", ns]);
  }
}

/** Loads a batch into a fresh namespace; returns the nft wall time in ms. */
export function loadInThrowawayNamespace(
  batch: Uint8Array,
  syntax: "json" | "text",
): Promise<number> {
  return withNamespace(async (ns) => {
    const t = performance.now();
    const r = await run("ip", [
      "netns",
      "exec",
      ns,
      "nft",
      ...(syntax === "json" ? ["-j"] : []),
      "-f",
      "-",
    ], batch);
    const ms = performance.now() - t;
    if (r.code !== 0) {
      throw new Error(`Cannot load the batch in ${ns}: ${r.stderr.trim().slice(0, 300)}`);
    }
    return ms;
  });
}
