/**
 * Tracking which kpx objects are in the kernel, from the plans applied, and
 * what of that a delta needs to be told: only the shared chains its endpoint
 * lists can use, so that a delta's input does not grow with the cluster.
 */
import type { Inventory, PlanOutput } from "./types.ts";

/**
 * Shared chains (wasm/assembly/names.ts: `slot-<path>-<u|m>-<i>` for slot i,
 * `pick-<path>-<u|m>-<n>` for lists of n) by the number ending their name.
 * Built once per inventory when a delta first asks, then carried from each
 * inventory to the next; never changed in place once attached.
 */
type SharedIndex = Map<number, string[]>;
const SHARED_CHAIN = /^(?:slot|pick)-.+-(\d+)$/;
const sharedIndexes = new WeakMap<Inventory, SharedIndex>();

function sharedNumber(chain: string): number | null {
  const m = SHARED_CHAIN.exec(chain);
  return m ? Number(m[1]) : null;
}

function sharedIndex(inv: Inventory): SharedIndex {
  let index = sharedIndexes.get(inv);
  if (!index) {
    index = new Map();
    for (const c of inv.chains) {
      const n = sharedNumber(c);
      if (n !== null) index.set(n, [...(index.get(n) ?? []), c]);
    }
    sharedIndexes.set(inv, index);
  }
  return index;
}

/**
 * What a delta's planner input carries of the inventory: the shared chains
 * that lists of up to `longest` endpoints use (slots below it, picks up to
 * it), nothing else. The planner's delta reads no more of the inventory
 * (wasm/assembly/batch.ts#planDelta); per-service chains and sets, which
 * grow with the cluster, stay out. Costs O(longest), not O(inventory).
 */
export function deltaInventory(inv: Inventory, longest: number): Inventory {
  const index = sharedIndex(inv);
  const chains: string[] = [];
  if (index.size > 0) {
    for (let n = 0; n <= longest; n++) {
      const names = index.get(n);
      if (names) chains.push(...names);
    }
  }
  return { layout: inv.layout, chains: chains.sort(), sets: [] };
}

/** Sorted `list` with `remove` taken out and `add` put in; `list` itself if that changes nothing. */
function updateSorted(
  list: readonly string[],
  remove: readonly string[],
  add: readonly string[],
): string[] {
  if (remove.length === 0 && add.length === 0) return list as string[];
  // Many changes (a full plan): rebuilding is cheaper than inserting one by one.
  if (remove.length + add.length > 64) {
    const s = new Set(list);
    for (const r of remove) s.delete(r);
    for (const a of add) s.add(a);
    return [...s].sort();
  }
  const out = [...list];
  const find = (x: string) => {
    let lo = 0, hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (out[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const r of remove) {
    const i = find(r);
    if (out[i] === r) out.splice(i, 1);
  }
  for (const a of add) {
    const i = find(a);
    if (out[i] !== a) out.splice(i, 0, a);
  }
  return out;
}

/**
 * The inventory after `out` was applied on top of `prev`. A delta that adds
 * or removes no chain or set reuses prev's lists; otherwise only the changes
 * are made (inventories are never changed in place).
 */
export function nextInventory(prev: Inventory, out: PlanOutput, layout: number): Inventory {
  const chainsGone: string[] = [], chainsNew: string[] = [];
  const setsGone: string[] = [], setsNew: string[] = [];
  for (const r of out.removed) {
    if (r.startsWith("chain:")) chainsGone.push(r.slice(6));
    else if (r.startsWith("set:")) setsGone.push(r.slice(4));
  }
  for (const a of out.added) {
    if (a.startsWith("chain:")) chainsNew.push(a.slice(6));
    else if (a.startsWith("set:")) setsNew.push(a.slice(4));
  }
  const next: Inventory = {
    layout,
    chains: updateSorted(prev.chains, chainsGone, chainsNew),
    sets: updateSorted(prev.sets, setsGone, setsNew),
  };
  const index = sharedIndexes.get(prev);
  if (index) {
    const gone = chainsGone.filter((c) => sharedNumber(c) !== null);
    const added = chainsNew.filter((c) => sharedNumber(c) !== null);
    if (gone.length === 0 && added.length === 0) {
      sharedIndexes.set(next, index);
    } else if (gone.length + added.length <= 64) {
      const copy: SharedIndex = new Map(index);
      for (const c of gone) {
        const n = sharedNumber(c)!;
        const rest = (copy.get(n) ?? []).filter((x) => x !== c);
        if (rest.length > 0) copy.set(n, rest);
        else copy.delete(n);
      }
      for (const c of added) {
        const n = sharedNumber(c)!;
        const names = copy.get(n) ?? [];
        if (!names.includes(c)) copy.set(n, [...names, c]);
      }
      sharedIndexes.set(next, copy);
    }
    // Otherwise (a full plan) the next delta builds the index afresh.
  }
  return next;
}
