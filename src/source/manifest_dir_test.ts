import { deepEqual, equal, ok } from "node:assert/strict";
import { Logger } from "../log/mod.ts";
import { ManifestDirSource } from "./manifest_dir.ts";

const svc = (name: string, ip: string) =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: default}\nspec: {clusterIP: ${ip}, ports: [{port: 80}]}\n`;

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("ManifestDirSource delivers the directory, then only what each file change changed", async () => {
  const dir = await Deno.makeTempDir();
  const events: string[] = [];
  const warnings: string[] = [];
  let synced = false;
  const src = new ManifestDirSource({
    dir,
    debounceMs: 20,
    log: new Logger({ write: (l) => warnings.push(l) }),
    handlers: {
      event: (kind, type, o) =>
        events.push(`${type} ${kind} ${(o["metadata"] as { name: string }).name}`),
      synced: () => synced = true,
      error: (e) => {
        throw e;
      },
    },
  });
  try {
    await Deno.writeTextFile(
      `${dir}/a.yaml`,
      svc("a", "10.96.0.1") + "---\n" + svc("b", "10.96.0.2"),
    );
    await Deno.writeTextFile(
      `${dir}/c.json`,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "c" },
        spec: { clusterIP: "10.96.0.3", ports: [{ port: 80 }] },
      }),
    );
    await Deno.writeTextFile(`${dir}/notes.txt`, "not a manifest");
    await src.start();
    ok(synced);
    deepEqual(events.sort(), ["upsert Service a", "upsert Service b", "upsert Service c"]);

    events.length = 0;
    await Deno.writeTextFile(`${dir}/a.yaml`, svc("a", "10.96.0.11"));
    await until(() => events.length >= 2, "the edit");
    deepEqual(events.sort(), ["delete Service b", "upsert Service a"], "only the changed objects");

    events.length = 0;
    await Deno.writeTextFile(
      `${dir}/a.yaml`,
      "apiVersion: v1\nkind: Service\nmetadata: {name: a\n",
    );
    await until(
      () => warnings.some((w) => w.includes("keeping its last readable contents")),
      "the warning",
    );
    equal(events.length, 0, "a half-written file changes nothing");

    await Deno.remove(`${dir}/c.json`);
    await until(() => events.includes("delete Service c"), "the removal");

    // An object moved unchanged to another file: no event, and removing it
    // from the old file does not delete it.
    events.length = 0;
    await Deno.writeTextFile(`${dir}/d.yaml`, svc("a", "10.96.0.11"));
    await new Promise((r) => setTimeout(r, 200));
    await Deno.writeTextFile(`${dir}/a.yaml`, svc("e", "10.96.0.5"));
    await until(() => events.includes("upsert Service e"), "the new object");
    await new Promise((r) => setTimeout(r, 200));
    deepEqual(events, ["upsert Service e"], "the moved object was neither changed nor deleted");
  } finally {
    await src.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
