/**
 * The planner contract: the cost of a one-service change does not grow with
 * cluster size. Measured in bytes, not time (timings belong to bench/): the
 * encoded input of a delta, and the batch it yields, are the same for a
 * cluster of 40 services as for one of 3000, even when most of them have
 * ClientIP affinity (3 chains per port and a set per endpoint in the
 * inventory) and every endpoint-list length has its shared chains.
 */
import { equal, ok } from "node:assert/strict";
import { FakeNftables } from "../src/apply/nft_fake.ts";
import { EMPTY_INVENTORY, Planner, PlanSession } from "../src/planner/mod.ts";
import { ClusterState, parseEndpointSlice, parseService } from "../src/state/mod.ts";
import { CONTEXT } from "./contexts.ts";

const planner = await Planner.load();

function feed(state: ClusterState, name: string, i: number, endpoints: number, affinity: boolean) {
  const svc = parseService({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: {
      clusterIP: `10.96.${i >> 8}.${i & 255}`,
      ports: [{ name: "http", port: 80 }, { name: "dns", port: 53, protocol: "UDP" }],
      ...(affinity ? { sessionAffinity: "ClientIP" } : {}),
    },
  });
  if (svc.kind === "service") state.upsertService(svc.spec);
  const eps = [];
  for (let e = 0; e < endpoints; e++) {
    eps.push({
      addresses: [`10.${128 + (i >> 12)}.${(i >> 4) & 255}.${((i & 15) << 4) + e + 1}`],
      nodeName: "node-b",
      conditions: { ready: true },
    });
  }
  const slice = parseEndpointSlice({
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${name}-1`,
      namespace: "default",
      labels: { "kubernetes.io/service-name": name },
    },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080 }, { name: "dns", port: 5353, protocol: "UDP" }],
    endpoints: eps,
  });
  if (slice.kind === "slice") state.upsertSlice(slice.spec);
}

/**
 * A cluster of n services (4 in 5 with affinity, list lengths 1..8) and a
 * service "changed" with 3 endpoints, planned in full and applied; then
 * "changed" gets `after` endpoints, planned as a delta and applied.
 */
function clusterThenDelta(n: number, after: number) {
  const state = new ClusterState("node-a");
  for (let i = 1; i <= n; i++) feed(state, `svc-${i}`, i, 1 + i % 8, i % 5 !== 0);
  feed(state, "changed", 4095, 3, false);
  const session = new PlanSession(planner);
  const nft = new FakeNftables();
  const full = session.plan(state, CONTEXT);
  nft.apply(full.output.batch);
  full.commit();
  feed(state, "changed", 4095, after, false);
  const delta = session.plan(state, CONTEXT);
  equal(delta.full, false);
  nft.apply(delta.output.batch);
  delta.commit();
  return {
    full: full.output,
    delta: delta.output,
    inventory: session.inventory,
    table: nft.snapshot()!,
    state,
  };
}

/** The changed service gains an endpoint: a list length the cluster already has shared chains for. */
function oneServiceDelta(n: number) {
  return clusterThenDelta(n, 4);
}

Deno.test("planDelta(): a one-service change's input and batch do not grow with the cluster", () => {
  const sizes = [40, 400, 3000].map((n) => ({ n, ...oneServiceDelta(n) }));
  const first = sizes[0]!;
  for (const s of sizes) {
    // The cluster (and its inventory) did grow...
    ok(s.inventory.chains.length > s.n * 2, `${s.n}: ${s.inventory.chains.length} chains`);
    ok(s.inventory.sets.length > s.n, `${s.n}: ${s.inventory.sets.length} sets`);
    ok(s.full.inputBytes > s.n * 100, `${s.n}: full input of ${s.full.inputBytes} bytes`);
    // ...the delta did not.
    equal(
      s.delta.inputBytes,
      first.delta.inputBytes,
      `${s.n} services: delta input of ${s.delta.inputBytes} bytes, ${first.delta.inputBytes} for ${first.n}`,
    );
    equal(
      new TextDecoder().decode(s.delta.batch),
      new TextDecoder().decode(first.delta.batch),
      `${s.n} services: the delta batch differs`,
    );
  }
  // And the delta was right: the table is the one a full plan makes.
  for (const s of sizes) {
    const fresh = new FakeNftables();
    fresh.apply(planner.planFull(s.state.services(), CONTEXT, EMPTY_INVENTORY, 2).batch);
    equal(JSON.stringify(s.table), JSON.stringify(fresh.snapshot()), `${s.n}: table differs`);
  }
});

Deno.test("planDelta(): a change that needs new shared chains still gets them, whatever the inventory", () => {
  // Lists of 1..8 endpoints exist; the changed service grows to 12: slot
  // chains 8..11 and a pick chain for 12 are new, and nothing else is.
  const { delta, table, state } = clusterThenDelta(50, 12);
  const shared = delta.added.filter((a) => /^chain:(slot|pick)-/.test(a)).sort();
  equal(
    shared.join(" "),
    [
      "chain:pick-vip-u-12",
      "chain:slot-vip-u-10",
      "chain:slot-vip-u-11",
      "chain:slot-vip-u-8",
      "chain:slot-vip-u-9",
    ].join(" "),
  );
  const fresh = new FakeNftables();
  fresh.apply(planner.planFull(state.services(), CONTEXT, EMPTY_INVENTORY, 2).batch);
  equal(JSON.stringify(table), JSON.stringify(fresh.snapshot()));
});
