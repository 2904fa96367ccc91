/** Tracking which kpx objects are in the kernel, from the plans applied. */
import type { Inventory, PlanOutput } from "./types.ts";

/** The inventory after `out` was applied on top of `prev`. */
export function nextInventory(prev: Inventory, out: PlanOutput, layout: number): Inventory {
  const chains = new Set(prev.chains);
  const sets = new Set(prev.sets);
  for (const r of out.removed) {
    if (r.startsWith("chain:")) chains.delete(r.slice(6));
    else if (r.startsWith("set:")) sets.delete(r.slice(4));
  }
  for (const a of out.added) {
    if (a.startsWith("chain:")) chains.add(a.slice(6));
    else if (a.startsWith("set:")) sets.add(a.slice(4));
  }
  return { layout, chains: [...chains].sort(), sets: [...sets].sort() };
}
