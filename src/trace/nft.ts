/**
 * nftables inside a namespace: load a JSON batch (`nft -j -f -`), list the ruleset.
 * @module
 */

import { runChecked } from "./exec.ts";

const NFT_TIMEOUT_MS = 60_000; // Large batches (benchmarks) take seconds to load.

/**
 * Loads an nftables JSON batch (`{"nftables": [...]}`) in `ns` as one transaction.
 * Accepts the JSON text or the value to serialise.
 */
export async function loadNftBatch(ns: string, batch: string | object): Promise<void> {
  const text = typeof batch === "string" ? batch : JSON.stringify(batch);
  await runChecked(`load nftables batch in ${ns}`, [
    "ip",
    "netns",
    "exec",
    ns,
    "nft",
    "-j",
    "-f",
    "-",
  ], {
    stdin: text,
    timeoutMs: NFT_TIMEOUT_MS,
  });
}

/** Loads a ruleset in nft's text syntax (`nft -f -`): handy for small test fixtures. */
export async function loadNftText(ns: string, ruleset: string): Promise<void> {
  await runChecked(`load nftables rules in ${ns}`, ["ip", "netns", "exec", ns, "nft", "-f", "-"], {
    stdin: ruleset,
    timeoutMs: NFT_TIMEOUT_MS,
  });
}

/** `nft -j list ruleset` in `ns`, parsed: `{"nftables": [{"metainfo": …}, {"table": …}, …]}`. */
export async function listNftRuleset(ns: string): Promise<{ nftables: Record<string, unknown>[] }> {
  const result = await runChecked(`list nftables ruleset in ${ns}`, [
    "ip",
    "netns",
    "exec",
    ns,
    "nft",
    "-j",
    "list",
    "ruleset",
  ], { timeoutMs: NFT_TIMEOUT_MS });
  return JSON.parse(result.stdout) as { nftables: Record<string, unknown>[] };
}
