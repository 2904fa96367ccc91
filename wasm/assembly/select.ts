// Endpoint selection, as kube-proxy's CategorizeEndpoints does it
// (pkg/proxy/topology.go): which endpoints receive cluster-policy traffic and
// which receive node-local-policy traffic, with the terminating fallback and
// topology hints.
import { Endpoint } from "./model";

export class EndpointLists {
  /** Endpoints for traffic under the Cluster policy. */
  cluster: Endpoint[] = new Array<Endpoint>();
  /** Endpoints on this node, for traffic under the Local policy. */
  local: Endpoint[] = new Array<Endpoint>();
  /** Any usable endpoint anywhere (ready, or serving and terminating). */
  hasAny: bool = false;
}

const TOPOLOGY_NONE: i32 = 0;
const TOPOLOGY_SAME_NODE: i32 = 1;
const TOPOLOGY_SAME_ZONE: i32 = 2;

/**
 * Which topology filter applies: same-node hints if every ready endpoint has
 * node hints and one names this node; otherwise same-zone hints if every ready
 * endpoint has zone hints and one names this node's zone; otherwise none.
 * There is no partial use: one endpoint without hints disables the filter.
 */
function topologyMode(eps: Endpoint[], nodeName: string, zone: string): i32 {
  let allNode = true;
  let forNode = false;
  let allZone = true;
  let forZone = false;
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    if (!e.ready) continue;
    if (e.nodeHints == 0) allNode = false;
    else if (e.nodeHints == 3) forNode = true;
    if (e.zoneHints == 0) allZone = false;
    else if (zone.length > 0 && e.zoneHints == 3) forZone = true;
  }
  if (allNode && forNode) return TOPOLOGY_SAME_NODE;
  if (allZone && forZone) return TOPOLOGY_SAME_ZONE;
  return TOPOLOGY_NONE;
}

function availableForTopology(e: Endpoint, mode: i32): bool {
  if (mode == TOPOLOGY_SAME_NODE) return e.nodeHints == 3;
  if (mode == TOPOLOGY_SAME_ZONE) return e.zoneHints == 3;
  return true;
}

/**
 * eps: the endpoints of one service port in one IP family, deduplicated and
 * sorted by the host. usesCluster / usesLocal say which policies the service's
 * traffic uses (kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints).
 */
export function selectEndpoints(
  eps: Endpoint[],
  usesCluster: bool,
  usesLocal: bool,
  nodeName: string,
  zone: string,
): EndpointLists {
  const out = new EndpointLists();
  if (usesCluster) {
    const mode = topologyMode(eps, nodeName, zone);
    let allReady = true;
    for (let i = 0; i < eps.length; i++) if (!unchecked(eps[i]).ready) allReady = false;
    if (allReady && mode == TOPOLOGY_NONE) {
      // The common case: every endpoint is used; share the array.
      out.cluster = eps;
    } else {
      for (let i = 0; i < eps.length; i++) {
        const e = unchecked(eps[i]);
        if (e.ready && availableForTopology(e, mode)) out.cluster.push(e);
      }
    }
    // No ready endpoint anywhere: fall back to endpoints that are terminating
    // but still serving, so connections drain instead of failing.
    if (out.cluster.length == 0) {
      for (let i = 0; i < eps.length; i++) {
        const e = unchecked(eps[i]);
        if (e.serving && e.terminating) out.cluster.push(e);
      }
    }
    if (out.cluster.length > 0) out.hasAny = true;
  }
  if (!usesLocal) return out;
  let localReady = false;
  let localTerminating = false;
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    const isLocal = e.local;
    if (e.ready) {
      out.hasAny = true;
      if (isLocal) localReady = true;
    } else if (e.serving && e.terminating) {
      out.hasAny = true;
      if (isLocal) localTerminating = true;
    }
  }
  for (let i = 0; i < eps.length; i++) {
    const e = unchecked(eps[i]);
    if (!e.local) continue;
    if (localReady ? e.ready : localTerminating && e.serving && e.terminating) out.local.push(e);
  }
  return out;
}
