/**
 * `kpx plan` as users run it: files and directories, multi-document YAML,
 * JSON, List kinds; readable and JSON output; a warning per invalid object
 * with everything else still planned; an unreadable file exits non-zero
 * naming the file and the reason.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { FIXTURE_DIR } from "./plan_fixtures.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;

async function kpx(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("kpx plan -o json prints the batch the golden test expects", async () => {
  const dir = `${FIXTURE_DIR}clusterip`;
  const r = await kpx(
    "plan",
    "--config",
    `${dir}/config.yaml`,
    "-o",
    "json",
    `${dir}/manifests.yaml`,
  );
  equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { nftables: unknown[] };
  const want = JSON.parse(await Deno.readTextFile(`${dir}/expected.json`)) as {
    nftables: unknown[];
  };
  deepEqual(got, want);
});

Deno.test("kpx plan prints a readable batch by default", async () => {
  const dir = `${FIXTURE_DIR}clusterip`;
  const r = await kpx("plan", "--config", `${dir}/config.yaml`, `${dir}/manifests.yaml`);
  equal(r.code, 0, r.stderr);
  ok(r.stdout.startsWith("add table inet kpx\n"));
  ok(
    r.stdout.includes(
      "add element inet kpx service-ips4 {\n  10.96.0.10 . tcp . 80 : goto class-clusterip\n}",
    ),
    r.stdout.slice(0, 500),
  );
});

Deno.test("kpx plan reads directories, JSON, List kinds and multi-document YAML alike", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const node = {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "node-a" },
      status: { addresses: [{ type: "InternalIP", address: "192.0.2.10" }] },
    };
    const svc = (name: string, ip: string) => ({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: "default" },
      spec: { clusterIP: ip, ports: [{ port: 80 }] },
    });
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(
      `${dir}/list.json`,
      JSON.stringify({ apiVersion: "v1", kind: "List", items: [node, svc("a", "10.96.0.1")] }),
    );
    await Deno.writeTextFile(
      `${dir}/sub/two.yaml`,
      `apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: b, namespace: default}\n  spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n---\n${
        JSON.stringify(svc("c", "10.96.0.3"))
      }\n`,
    );
    await Deno.writeTextFile(`${dir}/.hidden.yaml`, JSON.stringify(svc("hidden", "10.96.0.4")));
    const r = await kpx("plan", "-o", "json", dir);
    equal(r.code, 0, r.stderr);
    const text = r.stdout;
    for (const ip of ["10.96.0.1", "10.96.0.2", "10.96.0.3"]) {
      ok(text.includes(`"${ip}"`), `${ip} planned`);
    }
    ok(!text.includes("10.96.0.4"), "dotfiles are skipped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kpx plan warns once per invalid object and still plans the rest", async () => {
  const dir = `${FIXTURE_DIR}invalid-objects`;
  const r = await kpx(
    "plan",
    "-o",
    "json",
    "--config",
    `${dir}/config.yaml`,
    `${dir}/manifests.yaml`,
  );
  equal(r.code, 0, r.stderr);
  const warnings = r.stderr.split("\n").filter((l) => l.includes("level=warn"));
  equal(warnings.length, 6, r.stderr);
  ok(
    warnings.some((w) =>
      w.includes(
        "Cannot use Service default/bad-port: spec.ports[0]: port 70000 is out of range 1-65535",
      )
    ),
  );
  ok(r.stdout.includes('"10.96.0.10"'), "the good service is planned");
});

Deno.test("kpx plan exits non-zero naming an unreadable file and the reason", async () => {
  const missing = await kpx("plan", "/nonexistent/services.yaml");
  equal(missing.code, 1);
  ok(
    missing.stderr.includes("Cannot read /nonexistent/services.yaml: No such file or directory"),
    missing.stderr,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/broken.yaml`,
      "apiVersion: v1\nkind: Service\nmetadata: {name: x\n",
    );
    const broken = await kpx("plan", `${dir}/broken.yaml`);
    equal(broken.code, 1);
    ok(broken.stderr.includes(`Cannot read ${dir}/broken.yaml: document 1:`), broken.stderr);
    const usage = await kpx("plan");
    equal(usage.code, 2, "no path is a usage error");
    equal((await kpx("plan", "--bogus", "x.yaml")).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
