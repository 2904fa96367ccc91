/** `kpx version`: what this binary is. */
import { BUILD_INFO } from "../../wasm/build/build_info.ts";
import { ABI_VERSION, Planner } from "../planner/mod.ts";
import denoJson from "../../deno.json" with { type: "json" };

export async function versionCommand(
  out: (s: string) => Promise<void>,
  json: boolean,
): Promise<number> {
  const planner = await Planner.load();
  const info = {
    kpx: denoJson.version,
    commit: BUILD_INFO.commit,
    plannerABI: ABI_VERSION,
    nftablesLayout: planner.layoutVersion,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
  };
  if (json) await out(JSON.stringify(info) + "\n");
  else {
    await out(
      `kpx ${info.kpx} (commit ${info.commit})\nplanner ABI ${info.plannerABI}, nftables layout ${info.nftablesLayout}\ndeno ${info.deno} (v8 ${info.v8})\n`,
    );
  }
  return 0;
}
