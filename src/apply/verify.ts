/**
 * Verification after an apply (pure): the kernel's generation marker, chains
 * and per-service (affinity) sets against what the plan says the table holds
 * now. Map and set elements are not read back: listing them costs as much as
 * loading them at 10k services, and nft applies a batch whole or not at all.
 */
import type { PendingPlan } from "../planner/mod.ts";
import { AFFINITY_SET_PREFIX, type Marker } from "./nft.ts";

export class VerificationError extends Error {
  override name = "VerificationError";
}

/** Names in `want` and not in `got`, and the other way round, a few of each. */
function difference(got: readonly string[], want: readonly string[]): string {
  const have = new Set(got);
  const planned = new Set(want);
  const missing = want.filter((c) => !have.has(c)).slice(0, 3);
  const extra = got.filter((c) => !planned.has(c)).slice(0, 3);
  return (missing.length ? `; missing ${missing.join(", ")}` : "") +
    (extra.length ? `; unexpected ${extra.join(", ")}` : "");
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Throws VerificationError naming the generation and what differs. */
export function verifyMarker(marker: Marker, p: Pick<PendingPlan, "generation" | "inventory">) {
  const g = p.generation;
  if (marker.generation !== g) {
    throw new VerificationError(
      `Cannot verify generation ${g}: the kernel's marker says ${marker.generation}`,
    );
  }
  const chains = p.inventory.chains;
  if (!same(marker.chains, chains)) {
    throw new VerificationError(
      `Cannot verify generation ${g}: ${marker.chains.length} chains in the kernel, ${chains.length} planned` +
        difference(marker.chains, chains),
    );
  }
  // The inventory may also name the generation marker; only per-service sets are compared.
  const sets = p.inventory.sets.filter((s) => s.startsWith(AFFINITY_SET_PREFIX)).sort();
  if (!same(marker.sets, sets)) {
    throw new VerificationError(
      `Cannot verify generation ${g}: ${marker.sets.length} affinity sets in the kernel, ${sets.length} planned` +
        difference(marker.sets, sets),
    );
  }
}
