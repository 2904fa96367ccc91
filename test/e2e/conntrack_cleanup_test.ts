/**
 * UDP conntrack cleanup with real packets. A UDP client that keeps its source
 * port keeps its conntrack entry, and with it the DNAT decision; kpx deletes
 * the stale entries after a sync, as kube-proxy does:
 * - an endpoint goes away: flows DNATed to it are deleted, so the client's
 *   next datagram reaches a live endpoint;
 * - a service gains its first endpoint: flows to its address (created while
 *   nothing DNATed them) are deleted, so the next datagram is DNATed.
 * Without the cleanup both clients would keep sending into the void.
 */
import { equal, ok } from "node:assert/strict";
import { Applier, NftCli, ProcessRunner } from "../../src/apply/mod.ts";
import { Logger } from "../../src/log/mod.ts";
import { kpxMetrics } from "../../src/metrics/mod.ts";
import { type PlanContext, Planner } from "../../src/planner/mod.ts";
import { ClusterState, parseEndpointSlice, parseService } from "../../src/state/mod.ts";
import { shouldSkipKernelTests, Testbed } from "./mod.ts";
import { serviceObject, sliceObject } from "./demo_manifests.ts";

Deno.test({
  name:
    "UDP conntrack entries to a removed endpoint, or from before a service had endpoints, are cleared",
  ignore: await shouldSkipKernelTests(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using tb = await Testbed.create({ nodes: 1, podsPerNode: 3, echoPorts: [5353] });
    const node = tb.node(0);
    const [client, a, b] = tb.pods as [typeof tb.pods[0], typeof tb.pods[0], typeof tb.pods[0]];
    const runner = new ProcessRunner(["ip", "netns", "exec", node.ns]);
    const metrics = kpxMetrics();
    const applier = new Applier({
      nft: new NftCli(runner),
      planner: await Planner.load(),
      log: new Logger({ write: () => {} }),
      metrics,
      conntrack: runner,
    });
    await applier.init();
    const state = new ClusterState(node.name);
    const ctx: PlanContext = {
      nodeName: node.name,
      nodeZone: "",
      masqueradeBit: 14,
      masqueradeAll: false,
      dropInvalid: true,
      localDetection: { mode: "CIDR", cidrs: ["10.244.0.0/16"] },
      nodePortAddresses: null,
      serviceCIDRs: [],
    };
    const put = (endpoints: typeof tb.pods) => {
      const svc = parseService(
        serviceObject({
          name: "dns",
          clusterIP: "10.96.0.53",
          port: 53,
          targetPort: 5353,
          protocol: "UDP",
        }),
      );
      if (svc.kind === "service") state.upsertService(svc.spec);
      const sl = parseEndpointSlice(
        sliceObject("dns", endpoints, tb.nodes, { port: 5353, protocol: "UDP" }),
      );
      if (sl.kind === "slice") state.upsertSlice(sl.spec);
    };
    const ask = (sourcePort: number) =>
      tb.request(client, {
        ip: "10.96.0.53",
        port: 53,
        protocol: "udp",
        sourcePort,
        timeoutMs: 800,
      });

    // 0. Another service is programmed: conntrack is active, as on any node,
    //    and kpx has a baseline (the first sync after a start clears nothing).
    const other = parseService(
      serviceObject({ name: "other", clusterIP: "10.96.0.80", port: 80, targetPort: 5353 }),
    );
    if (other.kind === "service") state.upsertService(other.spec);
    ok((await applier.sync(state, ctx)).ok);

    // 1. No dns service yet: datagrams to its address leave through the
    //    default route and create a conntrack entry with no DNAT.
    const early = await ask(40053);
    equal(early.ok, false);
    ok(
      (await tb.listConntrack(node)).some((e) =>
        e.original.dport === 53 && e.original.sport === 40053
      ),
      "an un-NATed entry exists",
    );
    // The service appears with its first endpoint: the stale entry goes, the same client is served.
    put([a]);
    ok((await applier.sync(state, ctx)).ok);
    ok(metrics.conntrackDeleted.get() > 0, "the un-NATed entry was deleted");
    const served = await ask(40053);
    ok(
      served.ok && served.pod === a.name,
      `after the first endpoint appears: ${JSON.stringify(served)}`,
    );

    // 2. Two endpoints; the client's flow sticks to one of them. Remove that one.
    put([a, b]);
    ok((await applier.sync(state, ctx)).ok);
    let sticky = await ask(40054);
    for (let port = 40055; sticky.ok && sticky.pod !== a.name && port < 40090; port++) {
      sticky = await ask(port);
    }
    ok(sticky.ok && sticky.pod === a.name, "found a flow DNATed to pod a");
    const port = sticky.sourcePort!;
    equal((await ask(port)).ok && true, true);
    const before = metrics.conntrackDeleted.get();
    put([b]);
    ok((await applier.sync(state, ctx)).ok);
    ok(metrics.conntrackDeleted.get() > before, "entries were deleted");
    const moved = await ask(port);
    ok(
      moved.ok && moved.pod === b.name,
      `the same client now reaches pod b: ${JSON.stringify(moved)}`,
    );
  },
});
