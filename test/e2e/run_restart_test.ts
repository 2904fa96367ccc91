/**
 * SIGKILL during a sync: kpx is killed while it applies a large full sync;
 * a restarted kpx converges (programs exactly the manifests), and a TCP
 * connection established through a ClusterIP before the kill keeps working
 * throughout (conntrack keeps its NAT binding; an nftables transaction is
 * applied whole or not at all).
 */
import { equal, ok } from "node:assert/strict";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import { nodeObject, serviceObject, sliceObject, writeManifest } from "./demo_manifests.ts";
import { KpxProcess, TEST_DAEMON_FLAGS } from "./kpx_process.ts";

/** A line-echo TCP connection held open from one namespace. */
class HeldConnection {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: string[] = [];
  #waiters: Array<() => void> = [];

  constructor(ns: string, ip: string, port: number) {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, "socat", "-", `TCP:${ip}:${port},connect-timeout=3`],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          this.#lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          for (const w of this.#waiters.splice(0)) w();
        }
      }
    })();
  }

  /** Sends a line and waits (bounded) for its echo. */
  async roundTrip(text: string, timeoutMs = 3000): Promise<boolean> {
    const before = this.#lines.length;
    await this.#writer.write(new TextEncoder().encode(text + "\n"));
    const end = Date.now() + timeoutMs;
    while (this.#lines.length === before) {
      if (Date.now() > end) return false;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return this.#lines[this.#lines.length - 1] === text;
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch { /* exited */ }
    await this.#child.status;
  }
}

Deno.test({
  name:
    "kpx killed with SIGKILL during a sync: restart converges, established connections keep working",
  ignore: await shouldSkipKernelTests(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 2, echoPorts: [8080] });
    const node = tb.node(0);
    const [client, backend] = tb.pods as [typeof tb.pods[0], typeof tb.pods[0]];
    const echo = new Deno.Command("ip", {
      args: ["netns", "exec", backend.ns, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:cat"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const dir = await Deno.makeTempDir({ prefix: "kpx-restart-" });
    let conn: HeldConnection | undefined;
    try {
      await writeManifest(`${dir}/node.yaml`, [nodeObject(node)]);
      await writeManifest(`${dir}/echo.yaml`, [
        serviceObject({ name: "echo", clusterIP: "10.96.0.20", port: 9000, targetPort: 9000 }),
        sliceObject("echo", [backend], tb.nodes, { port: 9000 }),
      ]);
      const args = [
        "--manifests",
        dir,
        `--hostname-override=${node.name}`,
        "--cluster-cidr=10.244.0.0/16",
        ...TEST_DAEMON_FLAGS,
      ];
      let kpx = new KpxProcess({ netns: node.ns, args });
      await kpx.nextSync(20_000, 0);
      conn = new HeldConnection(client.ns, "10.96.0.20", 9000);
      ok(await conn.roundTrip("before"), "the connection works");

      // A large change, so the next sync takes a while; kill kpx while it runs.
      const big: Record<string, unknown>[] = [];
      for (let i = 0; i < 3000; i++) {
        big.push(
          serviceObject({
            name: `bulk-${i}`,
            clusterIP: `10.97.${i >> 8}.${i & 255}`,
            port: 80,
            targetPort: 8080,
          }),
        );
        big.push(sliceObject(`bulk-${i}`, [backend], tb.nodes, { port: 8080 }));
      }
      await writeManifest(`${dir}/bulk.yaml`, big);
      // The file debounce is 100 ms; planning and loading 3000 services takes
      // several hundred more: 400 ms in, the sync is under way.
      await new Promise((r) => setTimeout(r, 400));
      const status = await kpx.stop("SIGKILL");
      equal(status.signal, "SIGKILL");
      ok(
        !kpx.lines.some((l) =>
          l.fields["msg"] === "Synced" && Number(l.fields["services"] ?? 0) > 1000
        ),
        "kpx was killed before it finished syncing the bulk change",
      );
      ok(
        await conn.roundTrip("after kill"),
        "the established connection survives kpx being killed",
      );

      // Restart: converges to the manifests, and the connection still works.
      kpx = new KpxProcess({ netns: node.ns, args });
      const synced = await kpx.nextSync(60_000, 0);
      equal(synced.fields["full"], "true");
      ok(Number(synced.fields["services"]) >= 3001, `all services programmed: ${synced.raw}`);
      ok(await conn.roundTrip("after restart"), "the established connection survives the restart");
      const fresh = await tb.request(client, {
        ip: "10.97.11.183",
        port: 80,
        protocol: "tcp",
        timeoutMs: 2000,
      });
      ok(
        fresh.ok && fresh.pod === backend.name,
        `a service from the interrupted change works: ${JSON.stringify(fresh)}`,
      );
      equal((await kpx.stop("SIGTERM")).code, 0);
    } finally {
      await conn?.close();
      echo.kill("SIGKILL");
      await echo.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
