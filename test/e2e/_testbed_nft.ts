/**
 * nftables inside a namespace: load a JSON batch, load text rules, list the ruleset. Moved to
 * src/trace/nft.ts (`kpx trace` uses it too); re-exported here for the testbed.
 * @module
 */

export { listNftRuleset, loadNftBatch, loadNftText } from "../../src/trace/mod.ts";
