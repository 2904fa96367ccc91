/**
 * `kpx run --manifests DIR` inside a testbed node: real traffic follows the
 * manifests; a bad object is skipped with a warning and the rest still works;
 * SIGTERM leaves the rules (traffic keeps flowing); a restarted kpx takes them
 * over; `kpx cleanup` removes them.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import { nodeObject, serviceObject, sliceObject, writeManifest } from "./demo_manifests.ts";
import { KpxProcess, TEST_DAEMON_FLAGS } from "./kpx_process.ts";

const MAIN = new URL("../../src/main.ts", import.meta.url).pathname;

async function answering(
  tb: Testbed,
  from: Parameters<Testbed["request"]>[0],
  ip: string,
  port: number,
  n: number,
): Promise<Set<string>> {
  const results = await tb.requestMany(
    from,
    Array.from({ length: n }, () => ({ ip, port, protocol: "tcp" as const, timeoutMs: 1500 })),
  );
  const pods = new Set<string>();
  for (const r of results) pods.add(r.ok ? r.pod : `failed:${r.failure}`);
  return pods;
}

Deno.test({
  name:
    "kpx run --manifests: rules follow the directory, bad objects are skipped, SIGTERM leaves the rules, restart takes over, cleanup removes",
  ignore: await shouldSkipKernelTests(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 3, echoPorts: [8080] });
    const node = tb.node(0);
    const [a, b, c] = tb.pods as [typeof tb.pods[0], typeof tb.pods[0], typeof tb.pods[0]];
    const dir = await Deno.makeTempDir({ prefix: "kpx-manifests-" });
    try {
      await writeManifest(`${dir}/node.yaml`, [nodeObject(node)]);
      await writeManifest(`${dir}/web.yaml`, [
        serviceObject({
          name: "web",
          clusterIP: "10.96.0.10",
          port: 80,
          targetPort: 8080,
          type: "NodePort",
          nodePort: 30080,
        }),
        sliceObject("web", [a, b], tb.nodes, { port: 8080 }),
      ]);
      const args = [
        "--manifests",
        dir,
        `--hostname-override=${node.name}`,
        "--cluster-cidr=10.244.0.0/16",
        ...TEST_DAEMON_FLAGS,
      ];
      let kpx = new KpxProcess({ netns: node.ns, args });
      try {
        await kpx.nextSync(15_000, 0);
        deepEqual(await answering(tb, c, "10.96.0.10", 80, 20), new Set([a.name, b.name]));

        // Scale: only pod c now. The rules follow within a bounded time.
        const mark = kpx.lines.length;
        const t0 = performance.now();
        await writeManifest(`${dir}/web.yaml`, [
          serviceObject({
            name: "web",
            clusterIP: "10.96.0.10",
            port: 80,
            targetPort: 8080,
            type: "NodePort",
            nodePort: 30080,
          }),
          sliceObject("web", [c], tb.nodes, { port: 8080 }),
        ]);
        const synced = await kpx.nextSync(10_000, mark);
        const ms = performance.now() - t0;
        equal(synced.fields["full"], "false", "a one-service change is a delta");
        ok(ms < 3000, `change reached the kernel in ${ms.toFixed(0)} ms`);
        deepEqual(await answering(tb, a, "10.96.0.10", 80, 10), new Set([c.name]));
        deepEqual(
          await answering(tb, tb.client, node.ipv4, 30080, 10),
          new Set([c.name]),
          "NodePort from outside",
        );

        // A bad object among good ones: one warning naming it; the rest is programmed.
        const mark2 = kpx.lines.length;
        await writeManifest(`${dir}/bad.yaml`, [
          serviceObject({ name: "bad", clusterIP: "10.96.0.300", port: 80, targetPort: 8080 }),
          serviceObject({ name: "good", clusterIP: "10.96.0.11", port: 81, targetPort: 8080 }),
          sliceObject("good", [b], tb.nodes, { port: 8080 }),
        ]);
        const warn = await kpx.waitFor(
          (l) => l.fields["level"] === "warn" && l.fields["msg"]?.includes("default/bad") === true,
          10_000,
          "a warning about default/bad",
        );
        ok(warn.fields["msg"]!.includes("is not an IP address"), warn.raw);
        await kpx.nextSync(10_000, mark2);
        deepEqual(await answering(tb, a, "10.96.0.11", 81, 5), new Set([b.name]));
        deepEqual(await answering(tb, a, "10.96.0.10", 80, 5), new Set([c.name]));

        // SIGTERM: clean exit, rules stay, traffic keeps flowing.
        const status = await kpx.stop("SIGTERM");
        equal(status.code, 0, "exit status after SIGTERM");
        deepEqual(
          await answering(tb, a, "10.96.0.10", 80, 5),
          new Set([c.name]),
          "rules stay after kpx stops",
        );

        // Restart: takes the rules over (same generation line) and syncs.
        kpx = new KpxProcess({ netns: node.ns, args });
        await kpx.waitFor(
          (l) => l.fields["msg"]?.startsWith("Found kpx rules from an earlier run") === true,
          15_000,
          "the earlier rules",
        );
        const again = await kpx.nextSync(15_000, 0);
        ok(Number(again.fields["generation"]) > 1, "generations keep rising across restarts");
        deepEqual(await answering(tb, a, "10.96.0.10", 80, 5), new Set([c.name]));
        equal((await kpx.stop("SIGTERM")).code, 0);
      } finally {
        await kpx.stop("SIGKILL", 1000).catch(() => {});
      }

      // kpx cleanup removes the table.
      const cleanup = await tb.exec(
        node,
        [Deno.execPath(), "run", "--allow-all", MAIN, "cleanup"],
        { timeoutMs: 30_000 },
      );
      equal(cleanup.code, 0, cleanup.stderr);
      const tables = await tb.exec(node, ["nft", "list", "tables"]);
      ok(!tables.stdout.includes("kpx"), tables.stdout);
      ok(
        (await answering(tb, a, "10.96.0.10", 80, 3)).has("failed:timeout"),
        "no rules: nothing answers the VIP",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
