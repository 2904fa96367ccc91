/** `kpx cleanup` and `kpx status`: kpx's table on this node. */
import {
  cleanupIPVS,
  IpLink,
  IpvsadmCli,
  ipvsLoaded,
  localAddresses,
  NftCli,
  ProcessRunner,
  TABLE_FAMILY,
  TABLE_NAME,
} from "../apply/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { Output } from "./commands.ts";

export async function cleanupCommand(_argv: string[], log: Logger, out: Output): Promise<number> {
  const nft = new NftCli(new ProcessRunner());
  const removed = await nft.deleteTable();
  log.info(removed ? "Removed kpx's rules" : "No kpx rules to remove", {
    table: `${TABLE_FAMILY} ${TABLE_NAME}`,
  });
  await out(removed ? `removed table ${TABLE_FAMILY} ${TABLE_NAME}\n` : "nothing to remove\n");
  // IPVS mode's leftovers, where IPVS is loaded at all.
  const runner = new ProcessRunner();
  if (await ipvsLoaded(runner)) {
    const ipvs = await cleanupIPVS(
      new IpvsadmCli(runner),
      new IpLink(runner),
      await localAddresses(runner),
    );
    for (const e of ipvs.errors) log.warn("Cannot delete an IPVS virtual service", { error: e });
    if (ipvs.services.length || ipvs.link) {
      log.info("Removed kpx's IPVS state", {
        virtualServices: ipvs.services.length,
        interface: ipvs.link,
      });
      await out(
        `removed ${ipvs.services.length} IPVS virtual service(s)${
          ipvs.link ? " and interface kube-ipvs0" : ""
        }\n`,
      );
    }
  }
  return 0;
}

export async function statusCommand(argv: string[], _log: Logger, out: Output): Promise<number> {
  const nft = new NftCli(new ProcessRunner());
  const t = await nft.readTable();
  const info = {
    table: `${TABLE_FAMILY} ${TABLE_NAME}`,
    present: t.exists,
    generation: t.generation,
    layout: t.layout,
    chains: t.chains.length,
    sharedChains: t.chains.filter((c) => /^(slot|pick)-/.test(c)).length,
    affinityChains: t.chains.filter((c) => c.startsWith("affinity-")).length,
    affinitySets: t.sets.length,
  };
  if (
    argv.includes("--output=json") || argv.includes("-o=json") ||
    (argv.includes("-o") && argv.includes("json"))
  ) {
    await out(JSON.stringify(info) + "\n");
  } else if (!t.exists) {
    await out("kpx has no rules on this node\n");
  } else {
    await out(
      `table ${info.table}: generation ${info.generation} (layout ${info.layout})\n` +
        `${info.chains} chains (${info.sharedChains} shared endpoint-pick chains, ${info.affinityChains} affinity chains), ${info.affinitySets} affinity sets\n`,
    );
  }
  return 0;
}
