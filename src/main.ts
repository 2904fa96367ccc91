/** kpx: a Kubernetes node proxy. CLI entry point. */
import { runCli } from "./cli/mod.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
