import { equal } from "node:assert/strict";
import { creatorPid } from "./netns.ts";

Deno.test("creatorPid() reads the pid from a prefixed namespace name only", () => {
  equal(creatorPid("kpxr", "kpxr1234x7-node"), 1234);
  equal(creatorPid("kpxr", "kpxr1234x-prereq"), 1234);
  equal(creatorPid("kpxr", "kpxt1234x7-n0"), undefined);
  equal(creatorPid("kpxr", "kpxrabc"), undefined);
});
