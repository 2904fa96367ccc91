/** Kernel-test helpers: a throwaway namespace with kpx's nft layer pointed into it. */
import { NftCli, ProcessRunner } from "../src/apply/mod.ts";
import { withNamespace } from "../bench/netns.ts";
import { shouldSkipKernelTests } from "./e2e/mod.ts";

/** true: skip (with a warning); throws under CI=true when prerequisites are missing. */
export const SKIP_KERNEL = await shouldSkipKernelTests();

export interface KernelNs {
  name: string;
  runner: ProcessRunner;
  nft: NftCli;
  /** nft -j list table inet kpx, parsed; null if absent. */
  listTable(): Promise<unknown[] | null>;
}

export function withKernelNamespace<T>(fn: (ns: KernelNs) => Promise<T>): Promise<T> {
  return withNamespace((name) => {
    const runner = new ProcessRunner(["ip", "netns", "exec", name]);
    return fn({
      name,
      runner,
      nft: new NftCli(runner),
      async listTable() {
        const r = await runner.run(["nft", "-j", "list", "table", "inet", "kpx"]);
        if (r.code !== 0) return null;
        return (JSON.parse(new TextDecoder().decode(r.stdout)) as { nftables: unknown[] }).nftables;
      },
    });
  });
}

/** A table listing reduced to what must match: chains with rules, sets with elements. */
export function normalizeListing(
  listing: unknown[] | null,
  opts: { dropShared?: boolean } = {},
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of listing ?? []) {
    const [kind, body] = Object.entries(o as Record<string, Record<string, unknown>>)[0]!;
    if (kind === "metainfo" || kind === "table") continue;
    if (kind === "chain") continue;
    if (kind === "rule") {
      const chain = String(body["chain"]);
      if (opts.dropShared && /^(slot|pick)-/.test(chain)) continue;
      const key = `chain ${chain}`;
      ((out[key] ??= []) as unknown[]).push(JSON.stringify(body["expr"]));
      continue;
    }
    const name = String(body["name"]);
    if (name.startsWith("generation-")) continue;
    const elems = (body["elem"] as unknown[] | undefined ?? []).map((e) => JSON.stringify(e))
      .sort();
    out[`${kind} ${name}`] = elems;
  }
  return out;
}
