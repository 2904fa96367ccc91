/**
 * The single-file package (deno task package) as a node without Deno or
 * Node.js runs it: on a minimal Debian root with no network, it runs
 * `kpx version` and `kpx plan`, checks its own integrity, unpacks once into
 * a versioned cache that concurrent first runs share, prunes old versions,
 * and writes nothing outside that cache. Also: the permissions the artifacts
 * ship with, and `deno task compile` without denort.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { BuildError, bundleKpx, envReads } from "../deploy/bundle.ts";
import { compileKpx } from "../deploy/compile.ts";
import {
  ALLOWED_ENV,
  ALLOWED_PROGRAMS,
  NARROWED_PERMISSION_FLAGS,
  PERMISSION_FLAGS,
  V8_FLAGS,
} from "../deploy/permissions.ts";
import {
  builtCommit,
  ensurePackage,
  missingPrereqs,
  prereqGate,
  REPO,
  run,
  snapshot,
  ThrowawayRoot,
} from "./_package_root.ts";
import denoJson from "../deno.json" with { type: "json" };

const FIXTURE = `${REPO}/test/fixtures/plan/clusterip`;
const gate = prereqGate(await missingPrereqs(), "the package tests");

/** The package's cache directory name (version and checksum prefix). */
async function cacheName(pkg: string): Promise<string> {
  const info = await run(["sh", pkg], { env: { KPX_LAUNCHER: "info" } });
  const m = /^cache name (\S+)$/m.exec(info.stdout);
  if (!m) throw new Error(`Cannot read the cache name from KPX_LAUNCHER=info: ${info.stderr}`);
  return m[1]!;
}

async function listDir(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test({
  name:
    "the package runs kpx version and kpx plan offline on a minimal Debian without Deno or Node.js",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    await using root = await ThrowawayRoot.create();
    const binds = { [pkg]: "/opt/kpx/kpx", [FIXTURE]: "/opt/fixture" };
    const bare = await root.sh(
      "for c in deno node nodejs npm npx; do if command -v $c; then exit 3; fi; done; ip -o link | wc -l",
      { binds },
    );
    equal(bare.code, 0, `the root has Deno or Node.js: ${bare.stdout}`);
    equal(bare.stdout.trim(), "1", "the root's network namespace has only lo");

    const v = await root.sh("/opt/kpx/kpx version", { binds });
    equal(v.code, 0, v.stderr);
    ok(
      v.stdout.startsWith(`kpx ${denoJson.version} (commit ${await builtCommit()})\n`),
      v.stdout,
    );
    ok(!v.stdout.includes("commit unknown"), v.stdout);
    match(v.stdout, new RegExp(`^deno ${Deno.version.deno.replaceAll(".", "\\.")} `, "m"));

    const plan = await root.sh(
      "/opt/kpx/kpx plan --config /opt/fixture/config.yaml -o json /opt/fixture/manifests.yaml",
      { binds },
    );
    equal(plan.code, 0, plan.stderr);
    deepEqual(
      JSON.parse(plan.stdout),
      JSON.parse(await Deno.readTextFile(`${FIXTURE}/expected.json`)),
    );

    // Nothing written anywhere but the package's cache (and the mount points).
    const written = [...(await snapshot(root.upper)).keys()].filter((p) =>
      !/^\/(opt|var|var\/cache|var\/cache\/kpx(\/.*)?|proc|sys|dev|run)$/.test(p) &&
      !p.startsWith("/opt/")
    );
    deepEqual(written, [], "kpx wrote outside /var/cache/kpx");
    const cached = await listDir(`${root.upper}/var/cache/kpx`);
    deepEqual(cached, [await cacheName(pkg)]);
  },
});

Deno.test({
  name: "a corrupted or truncated package refuses to run and unpacks nothing",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    const dir = await Deno.makeTempDir({ prefix: "kpx-pkg-" });
    try {
      equal((await run(["sh", pkg], { env: { KPX_LAUNCHER: "verify" } })).code, 0);
      const bytes = await Deno.readFile(pkg);
      const flipped = bytes.slice();
      flipped[flipped.length - 100_000]! ^= 0xff;
      const cases: Array<[string, Uint8Array]> = [
        ["flipped", flipped],
        ["truncated", bytes.slice(0, bytes.length - 5000)],
      ];
      for (const [name, content] of cases) {
        const bad = `${dir}/${name}`;
        await Deno.writeFile(bad, content, { mode: 0o755 });
        const cache = `${dir}/cache-${name}`;
        const r = await run(["sh", bad, "version"], { env: { KPX_CACHE_DIR: cache } });
        equal(r.code, 1, `${name}: ${r.stdout}`);
        match(
          r.stderr,
          /kpx launcher: Cannot run kpx: the package .* is corrupted \(payload checksum/,
        );
        deepEqual(await listDir(cache), [], `${name}: something was left in the cache`);
        const verify = await run(["sh", bad], { env: { KPX_LAUNCHER: "verify" } });
        equal(verify.code, 1, `${name}: KPX_LAUNCHER=verify accepted it`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "concurrent first runs unpack once; old versions, stale temporary directories and damaged copies go",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    const cache = await Deno.makeTempDir({ prefix: "kpx-cache-" });
    try {
      // An older version (has the marker), a temporary directory a killed
      // first run left an hour ago, one a concurrent first run is filling
      // right now, and a directory that is not kpx's.
      await Deno.mkdir(`${cache}/0.0.1-deadbeefdeadbeef`);
      await Deno.writeTextFile(`${cache}/0.0.1-deadbeefdeadbeef/.kpx-package`, "x\n");
      await Deno.mkdir(`${cache}/.tmp-0.0.1-old`);
      const hourAgo = new Date(Date.now() - 3600_000);
      await Deno.utime(`${cache}/.tmp-0.0.1-old`, hourAgo, hourAgo);
      await Deno.mkdir(`${cache}/.tmp-0.0.2-busy`);
      await Deno.mkdir(`${cache}/not-kpx`);

      const runs = await Promise.all(
        Array.from({ length: 4 }, () => run([pkg, "version"], { env: { KPX_CACHE_DIR: cache } })),
      );
      for (const r of runs) equal(r.code, 0, r.stderr);
      deepEqual(await listDir(cache), [".tmp-0.0.2-busy", await cacheName(pkg), "not-kpx"].sort());
      const again = await run([pkg, "version"], {
        env: { KPX_CACHE_DIR: cache, KPX_VERIFY: "1" },
      });
      equal(again.code, 0, again.stderr);
      // A damaged copy (the runtime deleted) is unpacked anew.
      await Deno.remove(`${cache}/${await cacheName(pkg)}/deno`);
      const repaired = await run([pkg, "version"], { env: { KPX_CACHE_DIR: cache } });
      equal(repaired.code, 0, repaired.stderr);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test({
  name: "for a user other than root the package unpacks under XDG_CACHE_HOME",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    await using root = await ThrowawayRoot.create();
    const r = await root.sh(
      `setpriv --reuid=65534 --regid=65534 --clear-groups \
         env HOME=/nonexistent XDG_CACHE_HOME=/tmp/xdg /opt/kpx/kpx version >/dev/null
       ls /tmp/xdg/kpx; test ! -e /var/cache/kpx`,
      { binds: { [pkg]: "/opt/kpx/kpx" } },
    );
    equal(r.code, 0, r.stderr);
    equal(r.stdout.trim(), await cacheName(pkg));
  },
});

/** A test API server serving the fixture's objects, run inside kpx's network namespace. */
const API_SERVER_SCRIPT = `
import { parseAllDocuments } from "yaml";
import { startApiServer } from "${REPO}/test/e2e/api_server.ts";
import { writeKubeconfig } from "${REPO}/test/e2e/kubeconfig.ts";
const [manifests, dir] = Deno.args;
const api = await startApiServer();
const RESOURCES = { Service: "services", EndpointSlice: "endpointslices", Node: "nodes" };
for (const doc of parseAllDocuments(await Deno.readTextFile(manifests))) {
  const o = doc.toJS();
  if (o) api.store.create(RESOURCES[o.kind], o);
}
await writeKubeconfig(dir, api);
await new Promise(() => {});
`;

Deno.test({
  name:
    "the package follows the Kubernetes API (TLS, bearer token) and programs the rules, offline",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    const dir = await Deno.makeTempDir({ prefix: "kpx-api-" });
    try {
      await Deno.writeTextFile(`${dir}/server.ts`, API_SERVER_SCRIPT);
      // One fresh network namespace (lo only) holds the API server and kpx:
      // kpx's rules land there, and nothing can be fetched from outside.
      const r = await run([
        "unshare",
        "--net",
        "bash",
        "-c",
        `set -euo pipefail
        ip link set lo up
        "$DENO" run -A --config "$REPO/deno.json" "$DIR/server.ts" "$FIXTURE/manifests.yaml" "$DIR" \
          >"$DIR/server.log" 2>&1 &
        server=$!
        for _ in $(seq 1 100); do [ -s "$DIR/kubeconfig" ] && break; sleep 0.1; done
        KPX_CACHE_DIR="$DIR/cache" "$PKG" run --kubeconfig "$DIR/kubeconfig" \
          --hostname-override node-a --conntrack-max-per-core=0 --v=2 >"$DIR/kpx.log" 2>&1 &
        kpx=$!
        found=0
        for _ in $(seq 1 150); do
          if nft list table inet kpx 2>/dev/null | grep -q '10.96.0.10 . tcp . 80'; then found=1; break; fi
          sleep 0.1
        done
        kill -TERM "$kpx"; wait "$kpx" || true
        kill "$server"; wait "$server" || true
        cat "$DIR/kpx.log"
        [ "$found" = 1 ]`,
      ], {
        env: { DENO: Deno.execPath(), REPO, DIR: dir, FIXTURE, PKG: pkg },
      });
      equal(r.code, 0, `kpx did not program the API's Service:\n${r.stdout}${r.stderr}`);
      match(r.stdout, /msg="Sources synced: programming rules"/);
      ok(!/level=error/.test(r.stdout), r.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The clusterip fixture's ready endpoints (its manifests.yaml). */
const CLUSTERIP_READY = ["10.244.0.5:8080", "10.244.1.5:8080", "10.244.2.5:8080"];

Deno.test({
  name:
    "kpx trace and kpx plan run from the package in the minimal root under the shipped permissions",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    // The launcher passes deploy/permissions.ts's flags, and nothing broader.
    const head = new TextDecoder().decode((await Deno.readFile(pkg)).slice(0, 16_384));
    const exec = /^exec "\$dir\/deno" run [^\n]*\n[^\n]*/m.exec(head)?.[0] ?? "";
    for (const flag of PERMISSION_FLAGS) ok(exec.includes(flag), `launcher lacks ${flag}: ${exec}`);
    ok(!/--allow-all|\s-A\s|--allow-ffi|--allow-write/.test(exec), exec);

    await using root = await ThrowawayRoot.create();
    const binds = { [pkg]: "/opt/kpx/kpx", [FIXTURE]: "/opt/fixture" };
    // ThrowawayRoot.sh runs in its own network namespace (lo only), with
    // /proc, /sys and a private /run/netns: trace makes its throwaway
    // namespaces in there, loads kpx's batch into them, fires real probes
    // (its probe client is a second deno process, started with its own
    // permissions), and deletes them.
    const r = await root.sh(
      `/opt/kpx/kpx trace --config /opt/fixture/config.yaml -o json \
         --from 10.244.0.7 --to 10.96.0.10:80 /opt/fixture/manifests.yaml
       echo "== netns"; ip netns list
       echo "== plan"
       /opt/kpx/kpx plan --config /opt/fixture/config.yaml /opt/fixture/manifests.yaml`,
      { binds },
    );
    equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    ok(!r.stderr.includes("Requires"), r.stderr);
    const [traceOut = "", rest = ""] = r.stdout.split("== netns\n");
    const [netns = "", planOut = ""] = rest.split("== plan\n");
    const report = JSON.parse(traceOut) as {
      verdict: string;
      endpoints: string[];
      masquerade: boolean;
      probes: number;
    };
    equal(report.verdict, "dnat", traceOut);
    ok(report.probes > 0, traceOut);
    ok(report.endpoints.length > 0, traceOut);
    for (const e of report.endpoints) ok(CLUSTERIP_READY.includes(e), `${e} is not ready`);
    equal(report.masquerade, false, "a pod's traffic to a ClusterIP is not masqueraded");
    equal(netns.trim(), "", "trace left namespaces behind");
    match(planOut, /^add table inet kpx$/m);
    match(planOut, /10\.96\.0\.10 \. tcp \. 80/);
  },
});

/** Programs src/ starts: runner.run(["x", ...]), runChecked(r, ["x", ...]), new Deno.Command("x"). */
async function programsInSrc(): Promise<Set<string>> {
  const found = new Set<string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts") && !e.name.includes("fake")) {
        const text = await Deno.readTextFile(p);
        for (
          const m of text.matchAll(/\b(?:run|runChecked|tryRun)\((?:[\w.]+,\s*)?\[\s*"([\w.-]+)"/g)
        ) {
          found.add(m[1]!);
        }
        for (const m of text.matchAll(/new Deno\.Command\(\s*"([\w.-]+)"/g)) found.add(m[1]!);
      }
    }
  };
  await walk(`${REPO}/src`);
  return found;
}

Deno.test("the narrowed permission list names exactly the programs src/ runs", async () => {
  const used = [...await programsInSrc()].sort();
  deepEqual(
    used,
    [...ALLOWED_PROGRAMS].sort(),
    "update ALLOWED_PROGRAMS in deploy/permissions.ts to what src/ runs",
  );
});

Deno.test("deno task kpx runs with the V8 flags the shipped artifacts bake in", () => {
  const task = (denoJson as { tasks: Record<string, string> }).tasks["kpx"] ?? "";
  ok(task.includes(`--v8-flags=${V8_FLAGS} `), `deno.json's kpx task: ${task}`);
});

Deno.test("envReads() finds named reads and flags computed or enumerated ones", () => {
  const r = envReads(
    `a=process.env.FOO;b=x.env.BAR_2;c=Deno.env.get("K8S");d=Deno.env.get(name);` +
      `e=Object.keys(process.env);f=process.env[k];g={env:{}};h=o.environment`,
  );
  deepEqual([...r.names].sort(), ["BAR_2", "FOO", "K8S"]);
  deepEqual(r.dynamic.length, 3, r.dynamic.join(" | "));
});

Deno.test("the narrowed environment list names exactly what the bundle reads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kpx-bundle-" });
  try {
    // bundleKpx() itself refuses a bundle that reads an unlisted variable.
    await bundleKpx(`${dir}/kpx.js`);
    const reads = envReads(await Deno.readTextFile(`${dir}/kpx.js`));
    deepEqual(reads.dynamic, []);
    deepEqual(
      [...reads.names].sort(),
      [...ALLOWED_ENV].sort(),
      "update ALLOWED_ENV in deploy/permissions.ts to what the bundle reads",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "kpx version, plan and run work under the narrowed permissions",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    const cache = await Deno.makeTempDir({ prefix: "kpx-cache-" });
    try {
      equal((await run([pkg, "version"], { env: { KPX_CACHE_DIR: cache } })).code, 0);
      const dir = `${cache}/${await cacheName(pkg)}`;
      const kpx = (...args: string[]) =>
        run([
          "unshare",
          "--net",
          `${dir}/deno`,
          "run",
          "--no-config",
          "--no-remote",
          "--no-npm",
          ...NARROWED_PERMISSION_FLAGS,
          `${dir}/kpx.js`,
          ...args,
        ], { env: { DENO_DIR: `${dir}/deno-dir` } });
      const v = await kpx("version");
      equal(v.code, 0, v.stderr);
      const plan = await kpx(
        "plan",
        "--config",
        `${FIXTURE}/config.yaml`,
        "-o",
        "json",
        `${FIXTURE}/manifests.yaml`,
      );
      equal(plan.code, 0, plan.stderr);
      // kpx run, in a fresh network namespace, under the same permissions:
      // it programs its (empty) table, then SIGTERM ends it cleanly.
      const manifests = await Deno.makeTempDir({ dir: cache });
      const r = await run([
        "timeout",
        "--preserve-status",
        "-s",
        "TERM",
        "8",
        "unshare",
        "--net",
        `${dir}/deno`,
        "run",
        "--no-config",
        "--no-remote",
        "--no-npm",
        ...NARROWED_PERMISSION_FLAGS,
        `${dir}/kpx.js`,
        "run",
        "--manifests",
        manifests,
        "--hostname-override=node-a",
        "--conntrack-max-per-core=0",
        "--healthz-bind-address=",
        "--metrics-bind-address=",
        "--v=1",
      ], { env: { DENO_DIR: `${dir}/deno-dir` } });
      equal(r.code, 0, r.stderr);
      match(r.stderr, /msg=Synced full=true/);
      ok(!r.stderr.includes("Requires"), r.stderr);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test("deno task compile builds dist/kpx with denort, or says to use deno task package", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kpx-compile-" });
  try {
    const out = `${dir}/kpx`;
    const denortKnown = !!Deno.env.get("DENORT_BIN");
    try {
      await compileKpx(out);
    } catch (e) {
      ok(e instanceof BuildError, String(e));
      ok(!denortKnown, `compile failed although DENORT_BIN is set: ${e.message}`);
      match(e.message, /denort/);
      match(e.message, /DENORT_BIN/);
      match(e.message, /deno task package/);
      await rejects(Deno.stat(out), Deno.errors.NotFound);
      return;
    }
    // denort was available (DENORT_BIN, or Deno's download server reachable).
    const v = await run([out, "version"]);
    equal(v.code, 0, v.stderr);
    ok(v.stdout.includes(`(commit ${await builtCommit()})`), v.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
