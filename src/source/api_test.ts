import { deepEqual, equal } from "node:assert/strict";
import { forgetContent, slim } from "./api.ts";

Deno.test("forgetContent() leaves a cached object only its identity and resourceVersion", () => {
  const o = slim("EndpointSlice", {
    metadata: {
      name: "web-abc",
      namespace: "prod",
      resourceVersion: "42",
      labels: { "kubernetes.io/service-name": "web" },
      managedFields: [{ manager: "x" }],
    },
    addressType: "IPv4",
    ports: [{ port: 80 }],
    endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready: true } }],
  });
  const keys = Object.keys(o);
  forgetContent(o);
  deepEqual(o["metadata"], { name: "web-abc", namespace: "prod", resourceVersion: "42" });
  deepEqual(Object.keys(o), keys, "fields are cleared, not deleted");
  for (const k of keys) if (k !== "metadata") equal(o[k], undefined, k);
});
