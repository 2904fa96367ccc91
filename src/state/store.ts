/**
 * ClusterState: the normalised picture of Services, EndpointSlices and this
 * Node, with change tracking (which services must be re-planned) and
 * resolution of destination conflicts between services.
 */
import { ConflictError } from "./errors.ts";
import { parseIP } from "./ip.ts";
import { joinService } from "./join.ts";
import { OwnersMap } from "./_owners.ts";
import type { EndpointSliceSpec, NodeSpec, Service, ServiceSpec } from "./types.ts";

export interface Changes {
  /** The node or anything global changed: plan everything. */
  full: boolean;
  /** Services to re-plan (ids), when not full. */
  services: string[];
}

/** Destinations a service claims; two services must not share one. */
function claimsOf(s: ServiceSpec): string[] {
  const out: string[] = [];
  for (const ip of s.clusterIPs) out.push(`ClusterIP ${ip}`);
  for (const p of s.ports) {
    const proto = p.protocol.toLowerCase();
    for (const ip of [...s.clusterIPs, ...s.externalIPs, ...s.loadBalancerIPs]) {
      out.push(`${ip.includes(":") ? `[${ip}]` : ip}:${p.port}/${proto}`);
    }
    if (p.nodePort > 0) {
      for (const ip of s.clusterIPs) {
        out.push(`node port ${p.nodePort}/${proto} (IPv${parseIP(ip)?.family})`);
      }
    }
  }
  return [...new Set(out)];
}

export class ClusterState {
  #services = new Map<string, ServiceSpec>();
  #slices = new Map<string, EndpointSliceSpec>();
  #slicesByService = new OwnersMap();
  /** Destination -> the services claiming it. */
  #claims = new OwnersMap();
  #node: NodeSpec | null = null;
  #nodeName = "";
  #dirty = new Set<string>();
  #full = true;

  /** The node kpx runs on; its name decides which endpoints are local. */
  constructor(nodeName: string) {
    this.#nodeName = nodeName;
  }

  get nodeName(): string {
    return this.#nodeName;
  }

  get node(): NodeSpec | null {
    return this.#node;
  }

  setNode(node: NodeSpec | null): void {
    this.#node = node;
    this.#full = true;
  }

  /** Forces the next changes to be a full sync (config change, failed apply). */
  markFull(): void {
    this.#full = true;
  }

  upsertService(spec: ServiceSpec): void {
    this.#unclaim(spec.id);
    this.#services.set(spec.id, spec);
    for (const c of claimsOf(spec)) {
      for (const other of this.#claims.get(c)) this.#dirty.add(other);
      this.#claims.add(c, spec.id);
    }
    this.#dirty.add(spec.id);
  }

  deleteService(id: string): void {
    if (!this.#services.has(id)) return;
    this.#unclaim(id);
    this.#services.delete(id);
    this.#dirty.add(id);
  }

  #unclaim(id: string): void {
    const old = this.#services.get(id);
    if (!old) return;
    for (const c of claimsOf(old)) {
      this.#claims.remove(c, id);
      for (const other of this.#claims.get(c)) this.#dirty.add(other);
    }
  }

  upsertSlice(spec: EndpointSliceSpec): void {
    this.deleteSlice(spec.id);
    this.#slices.set(spec.id, spec);
    this.#slicesByService.add(spec.serviceId, spec.id);
    this.#dirty.add(spec.serviceId);
  }

  deleteSlice(id: string): void {
    const old = this.#slices.get(id);
    if (!old) return;
    this.#slices.delete(id);
    this.#slicesByService.remove(old.serviceId, id);
    this.#dirty.add(old.serviceId);
  }

  /** Ids of all known services (accepted or not), sorted. */
  serviceIds(): string[] {
    return [...this.#services.keys()].sort();
  }

  get serviceCount(): number {
    return this.#services.size;
  }

  get sliceCount(): number {
    return this.#slices.size;
  }

  /** The validated spec of a service (programmable or not). */
  spec(id: string): ServiceSpec | undefined {
    return this.#services.get(id);
  }

  /** Why a service cannot be programmed, if another service owns one of its destinations. */
  conflict(id: string): ConflictError | null {
    const spec = this.#services.get(id);
    if (!spec) return null;
    for (const c of claimsOf(spec)) {
      // The lexically first claimant keeps a contested destination: stable,
      // and independent of the order in which objects arrived.
      const first = this.#claims.first(c);
      if (first !== undefined && first !== id) return new ConflictError(id, first, c);
    }
    return null;
  }

  /** The service joined with its endpoints, or null if absent or in conflict. */
  service(id: string): Service | null {
    const spec = this.#services.get(id);
    if (!spec || this.conflict(id)) return null;
    const slices = this.#slicesByService.get(id).map((s) => this.#slices.get(s)!);
    return joinService(spec, slices, this.#nodeName, this.#node?.addresses ?? []);
  }

  /** Every programmable service, sorted by id. */
  services(): Service[] {
    const out: Service[] = [];
    for (const id of this.serviceIds()) {
      const s = this.service(id);
      if (s) out.push(s);
    }
    return out;
  }

  /** What changed since the last call; resets the tracker. */
  takeChanges(): Changes {
    const changes: Changes = { full: this.#full, services: [...this.#dirty].sort() };
    this.#full = false;
    this.#dirty.clear();
    return changes;
  }
}
