/**
 * From the IPVS table the kernel has to the one kpx wants, as ipvsadm-restore
 * lines (pure). IPVS has no transactions, so the order is chosen for the
 * traffic in between: new services and real servers first, then changes,
 * then removals, so that a service never goes through a moment with no real
 * server when it has one before and after.
 *
 * Graceful removal, as kube-proxy does it (pkg/proxy/ipvs/graceful_termination.go):
 * a TCP real server that goes away is first set to weight 0, so IPVS sends it
 * no new connection while the established ones finish; it is deleted once
 * its active and inactive connection counts are both 0, or after a timeout
 * (kube-proxy has none; a busy long-lived connection would otherwise keep a
 * dead endpoint forever). UDP and SCTP real servers are deleted at once, as
 * kube-proxy does: with net.ipv4.vs.expire_nodest_conn=1 their flows move on
 * with the next packet. A virtual service that goes away keeps its draining
 * real servers, and is deleted with the last of them.
 */
import {
  realKey,
  realOptions,
  serviceKey,
  serviceOptions,
  type VirtualService,
} from "../planner/mod.ts";
import type { IPVSTable, KernelReal, KernelService } from "./ipvs_state.ts";

export interface Graceful {
  /** When each draining real server ("<service key> <real key>") was set to weight 0, in ms. */
  drains: ReadonlyMap<string, number>;
  now: number;
  /** Delete a draining TCP real server after this long even with connections. */
  timeoutMs: number;
}

export interface Reconciliation {
  /** ipvsadm-restore lines, in order. */
  ops: string[];
  /** The table (for the keys looked at) once the lines are applied. */
  expected: Map<string, VirtualService>;
  /** Real servers draining afterwards, with when they started. */
  drains: Map<string, number>;
}

export function drainKey(serviceKeyText: string, r: { address: string; port: number }): string {
  return `${serviceKeyText} ${realKey(r)}`;
}

function copyService(s: KernelService | VirtualService): VirtualService {
  return {
    protocol: s.protocol,
    address: s.address,
    port: s.port,
    scheduler: s.scheduler,
    persistence: s.persistence,
    reals: s.reals.map((r) => ({
      address: r.address,
      port: r.port,
      weight: r.weight,
      forward: r.forward,
    })),
  };
}

function sortReals(s: VirtualService): VirtualService {
  s.reals.sort((a, b) => (realKey(a) < realKey(b) ? -1 : realKey(a) > realKey(b) ? 1 : 0));
  return s;
}

/**
 * The lines that turn `kernel` into `desired` for the keys in either.
 * Without `graceful`, removals are immediate (what undo uses); with it, TCP
 * real servers drain first (see the module comment).
 */
export function reconcile(
  kernel: IPVSTable,
  desired: ReadonlyMap<string, VirtualService>,
  graceful?: Graceful,
): Reconciliation {
  const adds: string[] = [];
  const edits: string[] = [];
  const removes: string[] = [];
  const serviceRemoves: string[] = [];
  const expected = new Map<string, VirtualService>();
  const drains = new Map<string, number>();
  const keys = [...new Set([...desired.keys(), ...kernel.keys()])].sort();

  /** What to do with a real server kpx no longer wants; true: it stays (draining). */
  const retire = (key: string, udpLike: boolean, r: KernelReal, into: VirtualService): boolean => {
    const dk = drainKey(key, r);
    const connections = r.activeConns + r.inactiveConns;
    if (!graceful || udpLike || connections === 0) {
      removes.push(`-d ${key} -r ${realKey(r)}`);
      return false;
    }
    const since = r.weight > 0 ? graceful.now : graceful.drains.get(dk) ?? graceful.now;
    if (r.weight === 0 && graceful.now - since >= graceful.timeoutMs) {
      removes.push(`-d ${key} -r ${realKey(r)}`);
      return false;
    }
    if (r.weight > 0) edits.push(`-e ${key} -r ${realKey(r)} ${realOptions({ ...r, weight: 0 })}`);
    drains.set(dk, since);
    into.reals.push({ address: r.address, port: r.port, weight: 0, forward: r.forward });
    return true;
  };

  for (const key of keys) {
    const want = desired.get(key);
    const have = kernel.get(key);
    const udpLike = (want ?? have)!.protocol !== "tcp";
    if (want && !have) {
      adds.push(`-A ${key} ${serviceOptions(want)}`);
      for (const r of want.reals) adds.push(`-a ${key} -r ${realKey(r)} ${realOptions(r)}`);
      expected.set(key, copyService(want));
      continue;
    }
    if (!have) continue;
    const after = copyService(want ?? have);
    after.reals = [];
    const haveReals = new Map(have.reals.map((r) => [realKey(r), r]));
    if (want) {
      if (want.scheduler !== have.scheduler || want.persistence !== have.persistence) {
        // -E sets every option: without -p it also ends persistence.
        edits.unshift(`-E ${key} ${serviceOptions(want)}`);
      }
      for (const r of want.reals) {
        const h = haveReals.get(realKey(r));
        if (!h) adds.push(`-a ${key} -r ${realKey(r)} ${realOptions(r)}`);
        else if (h.weight !== r.weight || h.forward !== r.forward) {
          edits.push(`-e ${key} -r ${realKey(r)} ${realOptions(r)}`);
        }
        after.reals.push({ ...r });
      }
      const wanted = new Set(want.reals.map(realKey));
      for (const h of have.reals) if (!wanted.has(realKey(h))) retire(key, udpLike, h, after);
      expected.set(key, sortReals(after));
      continue;
    }
    // Not wanted any more: drain its real servers; delete it with the last.
    const before = removes.length;
    let staying = 0;
    for (const h of have.reals) if (retire(key, udpLike, h, after)) staying++;
    if (staying === 0) {
      // Deleting the service deletes its real servers: drop their lines.
      removes.splice(before);
      serviceRemoves.push(`-D ${key}`);
    } else {
      expected.set(key, sortReals(after));
    }
  }
  return { ops: [...adds, ...edits, ...removes, ...serviceRemoves], expected, drains };
}

/** Connection-free copy of a planned table, as the kernel would list it. */
export function asKernelTable(services: Iterable<VirtualService>): IPVSTable {
  const out: IPVSTable = new Map();
  for (const s of services) {
    out.set(serviceKey(s), {
      ...s,
      reals: s.reals.map((r) => ({ ...r, activeConns: 0, inactiveConns: 0 })),
    });
  }
  return out;
}
