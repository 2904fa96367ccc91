/**
 * `deno task demo`: kpx on a real kernel, inside network namespaces it makes
 * and removes. A node with five pods, kpx following a manifest directory,
 * traffic from a pod and from an outside client, then a scale-down and a
 * scale-up of the "web" deployment's endpoints, with the time each change
 * took to reach the kernel.
 */
import { requireKernelPrereqs, Testbed } from "./mod.ts";
import type { PodHandle } from "./testbed.ts";
import { nodeObject, serviceObject, sliceObject, writeManifest } from "./demo_manifests.ts";
import { KpxProcess, TEST_DAEMON_FLAGS } from "./kpx_process.ts";

const bold = (s: string) => Deno.noColor ? s : `\x1b[1m${s}\x1b[0m`;
const dim = (s: string) => Deno.noColor ? s : `\x1b[2m${s}\x1b[0m`;
const say = (s = "") => console.log(s);

const prereqs = await requireKernelPrereqs();
if (!prereqs.ok) {
  console.error(`The demo needs root and a few tools: ${prereqs.missing.join("; ")}`);
  Deno.exit(1);
}

await using tb = await Testbed.create({ nodes: 1, podsPerNode: 5, echoPorts: [8080] });
const node = tb.node(0);
const [a, b, c, d, client] = tb.pods as PodHandle[] as [
  PodHandle,
  PodHandle,
  PodHandle,
  PodHandle,
  PodHandle,
];
const dir = await Deno.makeTempDir({ prefix: "kpx-demo-" });

say(bold("kpx demo"));
say(
  `node ${node.name} (${node.ipv4}, pods ${node.podCidrV4}), pods ${
    [a, b, c, d, client].map((p) => `${p.name}=${p.ipv4}`).join(" ")
  }`,
);
say(`outside client ${tb.client.ipv4}; manifests in ${dir}\n`);

async function writeServices(web: PodHandle[]): Promise<void> {
  await writeManifest(`${dir}/services.yaml`, [
    serviceObject({
      name: "web",
      clusterIP: "10.96.0.10",
      port: 80,
      targetPort: 8080,
      type: "NodePort",
      nodePort: 30080,
    }),
    sliceObject("web", web, tb.nodes, { port: 8080 }),
    serviceObject({
      name: "sticky",
      clusterIP: "10.96.0.20",
      port: 80,
      targetPort: 8080,
      affinitySeconds: 30,
    }),
    sliceObject("sticky", [a, b, c], tb.nodes, { port: 8080 }),
  ]);
}

async function tally(
  from: Parameters<Testbed["request"]>[0],
  ip: string,
  port: number,
  n: number,
): Promise<string> {
  const results = await tb.requestMany(
    from,
    Array.from({ length: n }, () => ({ ip, port, protocol: "tcp" as const, timeoutMs: 1500 })),
  );
  const counts = new Map<string, number>();
  const peers = new Set<string>();
  for (const r of results) {
    const k = r.ok ? r.pod : `(${r.failure})`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    if (r.ok) peers.add(r.peer);
  }
  const parts = [...counts].sort().map(([k, v]) => `${k} x${v}`).join(", ");
  return `${parts}; the pods saw the client as ${[...peers].join(", ")}`;
}

await writeManifest(`${dir}/node.yaml`, [nodeObject(node)]);
await writeServices([a, b, c]);
say(bold("1. Start kpx run --manifests on the node"));
const kpx = new KpxProcess({
  netns: node.ns,
  args: [
    "--manifests",
    dir,
    `--hostname-override=${node.name}`,
    "--cluster-cidr=10.244.0.0/16",
    ...TEST_DAEMON_FLAGS,
  ],
  echo: (l) => {
    if (
      ["Synced", "Starting", "Sources synced: programming rules"].includes(l.fields["msg"] ?? "") ||
      l.fields["level"] !== "info"
    ) {
      console.log(dim(`   kpx | ${l.raw.replace(/^ts=\S+ /, "")}`));
    }
  },
});
try {
  await kpx.nextSync(20_000, 0);
  say();
  say(bold("2. Traffic"));
  say(
    `   ${client.name} -> web ClusterIP 10.96.0.10:80 (30 connections): ${await tally(
      client,
      "10.96.0.10",
      80,
      30,
    )}`,
  );
  say(
    `   outside -> NodePort ${node.ipv4}:30080 (30 connections): ${await tally(
      tb.client,
      node.ipv4,
      30080,
      30,
    )}`,
  );
  say(
    `   ${client.name} -> sticky 10.96.0.20:80, ClientIP affinity (10 connections): ${await tally(
      client,
      "10.96.0.20",
      80,
      10,
    )}`,
  );
  say(
    dim(
      "   (pod traffic keeps its source; outside traffic to a NodePort is masqueraded to the node's address)",
    ),
  );

  for (
    const [label, pods] of [["scale web down to 2 (pod0c goes away)", [a, b]], [
      "scale web up to 4 (pod0c and pod0d)",
      [a, b, c, d],
    ]] as const
  ) {
    say();
    say(bold(`3. ${label}`));
    const mark = kpx.lines.length;
    const t0 = performance.now();
    await writeServices([...pods]);
    const synced = await kpx.nextSync(10_000, mark);
    const ms = performance.now() - t0;
    say(
      `   manifest written -> rules in the kernel: ${ms.toFixed(0)} ms (a ${
        synced.fields["full"] === "true" ? "full" : "delta"
      } sync, generation ${synced.fields["generation"]}; includes the 100 ms file-change debounce)`,
    );
    say(
      `   ${client.name} -> 10.96.0.10:80 (30 connections): ${await tally(
        client,
        "10.96.0.10",
        80,
        30,
      )}`,
    );
  }

  say();
  say(bold("4. Stop kpx"));
  const status = await kpx.stop("SIGTERM");
  say(`   kpx exited with status ${status.code}; its rules stay in place, traffic keeps flowing:`);
  say(
    `   ${client.name} -> 10.96.0.10:80 (10 connections): ${await tally(
      client,
      "10.96.0.10",
      80,
      10,
    )}`,
  );
  say(dim("   (`kpx cleanup` would remove them; here the namespaces go away with the demo)"));
} finally {
  await kpx.stop("SIGKILL", 1000).catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
say();
say("Done: every namespace the demo made is removed.");
