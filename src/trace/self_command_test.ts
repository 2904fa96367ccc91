import { deepEqual, equal, ok } from "node:assert/strict";
import { kpxRunMode, selfCommand } from "./self_command.ts";

Deno.test("kpxRunMode() tells source from a bundle by the module's file", () => {
  equal(kpxRunMode("file:///work/kpx/src/trace/self_command.ts"), "source");
  equal(kpxRunMode("file:///var/cache/kpx/0.1.0/kpx.js"), "bundle");
});

Deno.test("selfCommand() runs src/main.ts with the project's deno.json from source", () => {
  const argv = selfCommand("__probe");
  equal(argv[0], Deno.execPath());
  deepEqual(argv.slice(1, 3), ["run", "--allow-all"]);
  ok(argv.includes("--config") && argv[argv.indexOf("--config") + 1]!.endsWith("/deno.json"));
  ok(argv.at(-2)!.endsWith("/src/main.ts"), argv.join(" "));
  equal(argv.at(-1), "__probe");
});
