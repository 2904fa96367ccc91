/**
 * What kpx wants in IPVS, kept across syncs: each service's virtual services
 * and kube-ipvs0 addresses as last applied, so that a delta plan (which only
 * carries the changed services) can be turned into the virtual services and
 * addresses to look at, in time proportional to the change. A staged change
 * becomes the new state only when the sync that applied it commits.
 */
import { type ServiceIPVS, serviceKey, type VirtualService } from "../planner/mod.ts";

export interface StagedIPVS {
  full: boolean;
  /** Virtual service keys the plan concerns: every planned one (full), or the changed services' old and new ones. */
  keys: Set<string>;
  /** The wanted virtual services among `keys`. */
  desired: Map<string, VirtualService>;
  /** Full: every address kube-ipvs0 must hold. Delta: the ones to add. */
  bind: Set<string>;
  /** Delta: addresses no service holds any more (a full plan compares with the kernel instead). */
  unbind: Set<string>;
  /** Makes this the state the next plan starts from. */
  commit(): void;
}

export class DesiredIPVS {
  #records = new Map<string, ServiceIPVS>();
  #services = new Map<string, VirtualService>();
  #owner = new Map<string, string>();
  /** How many services bind each address (LB IPs and external IPs can be shared). */
  #bindCount = new Map<string, number>();

  /** Every wanted virtual service key. */
  get keys(): ReadonlySet<string> {
    return new Set(this.#services.keys());
  }

  stage(full: boolean, records: readonly ServiceIPVS[]): StagedIPVS {
    return full ? this.#stageFull(records) : this.#stageDelta(records);
  }

  #stageFull(records: readonly ServiceIPVS[]): StagedIPVS {
    const byId = new Map(records.map((r) => [r.id, r]));
    const services = new Map<string, VirtualService>();
    const owner = new Map<string, string>();
    const counts = new Map<string, number>();
    for (const r of records) {
      for (const s of r.services) {
        services.set(serviceKey(s), s);
        owner.set(serviceKey(s), r.id);
      }
      for (const a of r.binds) counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    return {
      full: true,
      keys: new Set(services.keys()),
      desired: services,
      bind: new Set(counts.keys()),
      unbind: new Set(),
      commit: () => {
        this.#records = byId;
        this.#services = services;
        this.#owner = owner;
        this.#bindCount = counts;
      },
    };
  }

  #stageDelta(records: readonly ServiceIPVS[]): StagedIPVS {
    const changed = new Set(records.map((r) => r.id));
    const keys = new Set<string>();
    const desired = new Map<string, VirtualService>();
    const counts = new Map<string, number>();
    const count = (a: string) => counts.get(a) ?? this.#bindCount.get(a) ?? 0;
    for (const r of records) {
      const old = this.#records.get(r.id);
      for (const s of old?.services ?? []) keys.add(serviceKey(s));
      for (const a of old?.binds ?? []) counts.set(a, count(a) - 1);
      for (const s of r.services) {
        keys.add(serviceKey(s));
        desired.set(serviceKey(s), s);
      }
      for (const a of r.binds) counts.set(a, count(a) + 1);
    }
    // A key an unchanged service also plans stays as that service has it
    // (only possible while two services conflict over it).
    for (const k of keys) {
      const o = this.#owner.get(k);
      if (!desired.has(k) && o !== undefined && !changed.has(o)) {
        desired.set(k, this.#services.get(k)!);
      }
    }
    const bind = new Set<string>();
    const unbind = new Set<string>();
    for (const [a, n] of counts) {
      const before = this.#bindCount.get(a) ?? 0;
      if (n > 0 && before === 0) bind.add(a);
      if (n <= 0 && before > 0) unbind.add(a);
    }
    return {
      full: false,
      keys,
      desired,
      bind,
      unbind,
      commit: () => {
        for (const r of records) {
          for (const s of this.#records.get(r.id)?.services ?? []) {
            if (this.#owner.get(serviceKey(s)) === r.id) {
              this.#services.delete(serviceKey(s));
              this.#owner.delete(serviceKey(s));
            }
          }
          if (r.services.length === 0 && r.binds.length === 0) this.#records.delete(r.id);
          else this.#records.set(r.id, r);
          for (const s of r.services) {
            this.#services.set(serviceKey(s), s);
            this.#owner.set(serviceKey(s), r.id);
          }
        }
        for (const [a, n] of counts) {
          if (n > 0) this.#bindCount.set(a, n);
          else this.#bindCount.delete(a);
        }
      },
    };
  }
}
