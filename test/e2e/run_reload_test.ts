/**
 * SIGHUP reloads --config: flipping masqueradeAll changes the rules with a
 * full sync, without a restart; an invalid file is refused and the running
 * configuration kept.
 */
import { equal, ok } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import { nodeObject, serviceObject, sliceObject, writeManifest } from "./demo_manifests.ts";
import { KpxProcess, TEST_DAEMON_FLAGS } from "./kpx_process.ts";

const config = (masqueradeAll: boolean) =>
  `apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\niptables: {masqueradeAll: ${masqueradeAll}}\n`;

Deno.test({
  name:
    "kpx run: SIGHUP reloads the config file (masqueradeAll on, then an invalid file is refused)",
  ignore: await shouldSkipKernelTests(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 2, echoPorts: [8080] });
    const node = tb.node(0);
    const [client, backend] = tb.pods as [typeof tb.pods[0], typeof tb.pods[0]];
    const dir = await Deno.makeTempDir({ prefix: "kpx-reload-" });
    const cfg = `${dir}/config.yaml`;
    try {
      await Deno.mkdir(`${dir}/m`);
      await writeManifest(`${dir}/m/all.yaml`, [
        nodeObject(node),
        serviceObject({ name: "web", clusterIP: "10.96.0.10", port: 80, targetPort: 8080 }),
        sliceObject("web", [backend], tb.nodes, { port: 8080 }),
      ]);
      await Deno.writeTextFile(cfg, config(false));
      await using kpx = new KpxProcess({
        netns: node.ns,
        args: [
          "--config",
          cfg,
          "--manifests",
          `${dir}/m`,
          `--hostname-override=${node.name}`,
          ...TEST_DAEMON_FLAGS,
        ],
      });
      await kpx.nextSync(15_000, 0);
      const before = await tb.request(client, { ip: "10.96.0.10", port: 80, protocol: "tcp" });
      ok(
        before.ok && before.peer === client.ipv4,
        `pod traffic keeps its source: ${JSON.stringify(before)}`,
      );

      await Deno.writeTextFile(cfg, config(true));
      const mark = kpx.lines.length;
      Deno.kill(kpx.pid, "SIGHUP");
      const synced = await kpx.nextSync(10_000, mark);
      equal(synced.fields["full"], "true", "a configuration change is a full sync");
      const after = await tb.request(client, { ip: "10.96.0.10", port: 80, protocol: "tcp" });
      ok(
        after.ok && after.peer === node.ipv4,
        `masqueradeAll: the pod sees the node: ${JSON.stringify(after)}`,
      );

      await Deno.writeTextFile(
        cfg,
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmasqueradAll: true\n",
      );
      Deno.kill(kpx.pid, "SIGHUP");
      const refused = await kpx.waitFor(
        (l) => l.fields["msg"]?.startsWith("Cannot reload") === true,
        10_000,
        "the refusal",
      );
      ok(refused.fields["error"]?.includes("masqueradAll: unknown field"), refused.raw);
      const still = await tb.request(client, { ip: "10.96.0.10", port: 80, protocol: "tcp" });
      ok(still.ok && still.peer === node.ipv4, "the running configuration is kept");
      equal((await kpx.stop("SIGTERM")).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
