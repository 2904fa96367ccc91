import { deepEqual, equal } from "node:assert/strict";
import { EndpointList } from "./endpoint_list.ts";
import type { EndpointSpec } from "./types.ts";

function ep(address: string, flags: Partial<EndpointSpec> = {}): EndpointSpec {
  return {
    address,
    ready: true,
    serving: true,
    terminating: false,
    nodeName: "node-a",
    zoneHints: [],
    nodeHints: [],
    ...flags,
  };
}

Deno.test("EndpointList gives back every endpoint as it was given: conditions, node, hints", () => {
  const given = [
    ep("10.0.0.1"),
    ep("10.0.0.2", { ready: false, serving: true, terminating: true, nodeName: "" }),
    ep("fd00::3", { ready: false, serving: false, zoneHints: ["z1", "z2"] }),
    ep("10.0.0.4", { nodeHints: ["node-b"], nodeName: "node-b" }),
  ];
  const list = new EndpointList(given);
  equal(list.length, 4);
  deepEqual([...list], given);
  deepEqual(list.at(2), given[2]);
  deepEqual(list.endpoint(3, 8080), { ...given[3], port: 8080 });
  equal(list.address(1), "10.0.0.2");
  equal(list.nodeName(1), "");
  equal(new EndpointList([]).length, 0);
});
