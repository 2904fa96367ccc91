/**
 * Host side of the IPVS-mode VM tests and benchmark: bundles kpx (and the
 * guest driver) into single JavaScript files for the guest's deno, which has
 * no network and no module cache: `deno bundle` inlines every import,
 * npm packages included.
 */
import { fileURLToPath } from "node:url";

const cache = new Map<string, Promise<Uint8Array>>();

/** `deno bundle` of a module of this repository, once per process. */
export function bundle(entry: "src/main.ts" | "test/e2e/_ipvs_mode_guest.ts"): Promise<Uint8Array> {
  let p = cache.get(entry);
  if (!p) {
    p = (async () => {
      const root = fileURLToPath(new URL("../../", import.meta.url));
      const out = await Deno.makeTempFile({ suffix: ".js" });
      try {
        const r = await new Deno.Command(Deno.execPath(), {
          args: ["bundle", "--quiet", "--platform", "deno", "-o", out, `${root}${entry}`],
          cwd: root,
          stdout: "piped",
          stderr: "piped",
        }).output();
        if (!r.success) {
          throw new Error(`Cannot bundle ${entry}: ${new TextDecoder().decode(r.stderr).trim()}`);
        }
        return await Deno.readFile(out);
      } finally {
        await Deno.remove(out);
      }
    })();
    cache.set(entry, p);
  }
  return p;
}
