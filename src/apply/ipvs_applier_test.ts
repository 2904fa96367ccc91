import { deepEqual, equal, ok } from "node:assert/strict";
import { Logger } from "../log/mod.ts";
import { kpxMetrics } from "../metrics/mod.ts";
import {
  allServices,
  EMPTY_INVENTORY,
  formatRestore,
  type PlanContext,
  Planner,
} from "../planner/mod.ts";
import { ClusterState, parseEndpointSlice, parseService } from "../state/mod.ts";
import { ClusterGenerator } from "../../test/cluster_gen.ts";
import { StateFeeder } from "../../test/state_feeder.ts";
import { CONTEXT } from "../../test/contexts.ts";
import { IPVSApplier } from "./ipvs_applier.ts";
import { FakeIpvs } from "./ipvs_fake.ts";
import { FakeLink } from "./ipvs_link.ts";
import { FakeNft } from "./nft.ts";

const planner = await Planner.load();
const quiet = new Logger({ write: () => {} });
const CTX: PlanContext = {
  ...CONTEXT,
  ipvs: { scheduler: "rr", nodeIPs: ["192.0.2.10", "2001:db8::10"] },
};

function setup(
  seed = 1,
  opts: { excludeCIDRs?: string[]; now?: () => number; drainTimeoutMs?: number } = {},
) {
  const gen = new ClusterGenerator(seed, { services: 12, maxEndpoints: 4 });
  const state = new ClusterState("node-a");
  const feeder = new StateFeeder(state);
  feeder.sync(gen);
  const nft = new FakeNft();
  const ipvs = new FakeIpvs();
  const link = new FakeLink();
  const metrics = kpxMetrics();
  const applier = new IPVSApplier({ nft, ipvs, link, planner, log: quiet, metrics, ...opts });
  return { gen, state, feeder, nft, ipvs, link, metrics, applier };
}

/** The IPVS table and addresses a fresh full plan of `state` asks for. */
function planned(state: ClusterState) {
  const p = planner.planIPVSFull(state.services(), CTX, EMPTY_INVENTORY, 1);
  return { text: formatRestore(allServices(p.ipvs.records)), addresses: p.ipvs.addresses };
}

async function kernel(ipvs: FakeIpvs, link: FakeLink) {
  return { text: formatRestore((await ipvs.list()).values()), addresses: await link.addresses() };
}

Deno.test("IPVSApplier: a full sync then deltas converge on what a fresh full plan asks for", async () => {
  const { gen, state, feeder, ipvs, link, nft, applier } = setup();
  await applier.init();
  const first = await applier.sync(state, CTX);
  ok(first.ok && first.full, first.error?.message ?? "");
  deepEqual(await kernel(ipvs, link), planned(state));
  ok(ipvs.table.size > 5, "the generated cluster has virtual services");
  for (let i = 0; i < 15; i++) {
    gen.mutate();
    feeder.sync(gen);
    const r = await applier.sync(state, CTX);
    ok(r.ok, `sync ${i}: ${r.error?.message}`);
    equal(r.full, false);
    deepEqual(await kernel(ipvs, link), planned(state), `after delta ${i}`);
  }
  equal((await nft.readMarker(1001)).generation, applier.session.generation);
});

Deno.test("IPVSApplier: an IPVS change that fails half-way is undone and the next full sync converges", async () => {
  const { gen, state, feeder, ipvs, link, metrics, applier } = setup(2);
  await applier.init();
  ok((await applier.sync(state, CTX)).ok);
  const before = await kernel(ipvs, link);
  const nftBefore = applier.session.generation;
  for (let i = 0; i < 4; i++) gen.mutate();
  feeder.sync(gen);
  ipvs.failAfterLines = 1;
  const r = await applier.sync(state, CTX, { full: true });
  equal(r.ok, false);
  ok(r.error?.message.includes("injected failure"), r.error?.message ?? "");
  ok(r.error?.message.includes("previous IPVS state is restored"), r.error?.message ?? "");
  equal(r.restored, true);
  deepEqual(await kernel(ipvs, link), before, "IPVS and kube-ipvs0 are as before the failed sync");
  equal(applier.session.generation, nftBefore);
  equal(metrics.rollbacks.get(), 1);
  const retry = await applier.sync(state, CTX);
  ok(retry.ok && retry.full, retry.error?.message ?? "");
  deepEqual(await kernel(ipvs, link), planned(state));
});

Deno.test("IPVSApplier: an nftables batch the kernel refuses undoes the IPVS side", async () => {
  const { gen, state, feeder, ipvs, link, nft, applier } = setup(3);
  await applier.init();
  ok((await applier.sync(state, CTX)).ok);
  const before = await kernel(ipvs, link);
  for (let i = 0; i < 4; i++) gen.mutate();
  feeder.sync(gen);
  nft.failNextApplies = 1;
  const r = await applier.sync(state, CTX);
  equal(r.ok, false);
  equal(r.restored, true);
  deepEqual(await kernel(ipvs, link), before);
  ok((await applier.sync(state, CTX)).ok);
  deepEqual(await kernel(ipvs, link), planned(state));
});

function webService(endpoints: string[]) {
  const state = new ClusterState("node-a");
  const svc = parseService({
    metadata: { name: "web", namespace: "default" },
    spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  });
  if (svc.kind !== "service") throw new Error("bad service");
  state.upsertService(svc.spec);
  return {
    state,
    slice: (eps: string[]) => state.upsertSlice(sliceOf(eps)),
    initial: sliceOf(endpoints),
  };
}

function sliceOf(eps: string[]) {
  const r = parseEndpointSlice({
    metadata: {
      name: "web-1",
      namespace: "default",
      labels: { "kubernetes.io/service-name": "web" },
    },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    endpoints: eps.map((a) => ({
      addresses: [a],
      nodeName: "node-b",
      conditions: { ready: true },
    })),
  });
  if (r.kind !== "slice") throw new Error("bad slice");
  return r.spec;
}

Deno.test("IPVSApplier: a TCP endpoint with connections drains at weight 0 and goes when idle", async () => {
  let now = 0;
  const { ipvs, link, applier } = setup(4, { now: () => now });
  const { state, slice, initial } = webService(["10.244.1.5", "10.244.2.5"]);
  state.upsertSlice(initial);
  await applier.init();
  ok((await applier.sync(state, CTX)).ok);
  const key = "-t 10.96.0.10:80";
  ipvs.setConnections(key, "10.244.1.5:8080", 1, 0);
  slice(["10.244.2.5"]);
  now = 1000;
  const r = await applier.sync(state, CTX);
  ok(r.ok && !r.full, r.error?.message ?? "");
  equal(
    ipvs.table.get(key)!.reals.find((x) => x.address === "10.244.1.5")?.weight,
    0,
    "weight 0 while connections remain",
  );
  deepEqual([...applier.drains], [[`${key} 10.244.1.5:8080`, 1000]]);
  // Still busy at the next full sync: it stays.
  now = 5000;
  ok((await applier.sync(state, CTX, { full: true })).ok);
  equal(ipvs.table.get(key)!.reals.length, 2);
  ipvs.setConnections(key, "10.244.1.5:8080", 0, 0);
  now = 6000;
  ok((await applier.sync(state, CTX, { full: true })).ok);
  deepEqual(ipvs.table.get(key)!.reals.map((x) => x.address), ["10.244.2.5"], "deleted once idle");
  equal(applier.drains.size, 0);
  deepEqual(await kernel(ipvs, link), planned(state));
});

Deno.test("IPVSApplier: a removed service's virtual service stays (with its address) until its last real server drains", async () => {
  let now = 0;
  const { ipvs, link, applier } = setup(6, { now: () => now, drainTimeoutMs: 10_000 });
  const { state, initial } = webService(["10.244.1.5"]);
  state.upsertSlice(initial);
  await applier.init();
  ok((await applier.sync(state, CTX)).ok);
  const key = "-t 10.96.0.10:80";
  ipvs.setConnections(key, "10.244.1.5:8080", 1, 0);
  state.deleteService("default/web");
  now = 1;
  ok((await applier.sync(state, CTX)).ok);
  equal(ipvs.table.get(key)?.reals[0]?.weight, 0);
  ok((await link.addresses()).includes("10.96.0.10"), "the address stays while the service drains");
  // Past the drain timeout, at a full sync: gone, address too.
  now = 20_000;
  ok((await applier.sync(state, CTX, { full: true })).ok);
  equal(ipvs.table.has(key), false);
  deepEqual(await link.addresses(), []);
});

Deno.test("IPVSApplier: leaves other virtual services alone, and those in excludeCIDRs on kube-ipvs0", async () => {
  const { state, ipvs, link, applier } = setup(5, { excludeCIDRs: ["10.200.0.0/16"] });
  await ipvs.restore([
    "-A -t 198.51.100.7:443 -s wlc", // someone else's, on an address kpx does not bind
    "-A -t 10.200.0.1:80 -s rr", // excluded
    "-A -t 192.0.2.10:22 -s rr", // a node address, outside the node-port range
    "-A -t 192.0.2.10:31999 -s rr", // a stale node port of kpx's (or kube-proxy's)
  ]);
  await link.ensure();
  await link.change(["10.200.0.1"], []);
  await applier.init();
  const r = await applier.sync(state, CTX);
  ok(r.ok, r.error?.message ?? "");
  const keys = [...ipvs.table.keys()];
  ok(keys.includes("-t 198.51.100.7:443"));
  ok(keys.includes("-t 10.200.0.1:80"));
  ok(keys.includes("-t 192.0.2.10:22"));
  ok(!keys.includes("-t 192.0.2.10:31999"), "a stale node port is removed");
});
