import { deepEqual, equal } from "node:assert/strict";
import { OwnersMap } from "./_owners.ts";

Deno.test("OwnersMap keeps each key's owners sorted, once each, and forgets empty keys", () => {
  const m = new OwnersMap();
  deepEqual(m.get("a"), []);
  equal(m.first("a"), undefined);
  m.add("a", "ns/web");
  m.add("a", "ns/web");
  deepEqual(m.get("a"), ["ns/web"]);
  m.add("a", "ns/api");
  m.add("a", "ns/zoo");
  deepEqual(m.get("a"), ["ns/api", "ns/web", "ns/zoo"]);
  equal(m.first("a"), "ns/api");
  m.get("a").push("changed outside");
  deepEqual(m.get("a"), ["ns/api", "ns/web", "ns/zoo"], "get() returns a copy");
  m.remove("a", "ns/api");
  m.remove("a", "ns/none");
  deepEqual(m.get("a"), ["ns/web", "ns/zoo"]);
  m.remove("a", "ns/zoo");
  deepEqual(m.get("a"), ["ns/web"]);
  m.remove("a", "ns/web");
  deepEqual(m.get("a"), []);
  equal(m.first("a"), undefined);
  m.add("a", "ns/b");
  m.add("a", "ns/a");
  equal(m.first("a"), "ns/a", "the first of two added out of order");
});
