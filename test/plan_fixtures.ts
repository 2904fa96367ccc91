/** Golden plan fixtures (test/fixtures/plan/<name>/): shared by the golden and kernel tests. */
import { type Config, loadConfig } from "../src/config/mod.ts";
import { type ManifestPlan, planManifests } from "../src/cli/planning.ts";
import { Planner, renderExpr, renderStmt } from "../src/planner/mod.ts";
import { parseManifests } from "../src/source/mod.ts";

export const FIXTURE_DIR = new URL("./fixtures/plan/", import.meta.url).pathname;

export function fixtureNames(): string[] {
  return [...Deno.readDirSync(FIXTURE_DIR)].filter((e) => e.isDirectory).map((e) => e.name).sort();
}

export function fixtureConfig(name: string): Config {
  const path = `${FIXTURE_DIR}${name}/config.yaml`;
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return loadConfig(text ? { file: { path: "config.yaml", text } } : {}).config;
}

let planner: Planner | undefined;

export async function planFixture(name: string): Promise<ManifestPlan> {
  planner ??= await Planner.load();
  const text = await Deno.readTextFile(`${FIXTURE_DIR}${name}/manifests.yaml`);
  return planManifests(parseManifests(text, "manifests.yaml"), fixtureConfig(name), { planner });
}

/** The batch as JSON, one command per line and one map element per line. */
export function goldenText(batch: Uint8Array): string {
  const doc = JSON.parse(new TextDecoder().decode(batch)) as {
    nftables: Record<string, unknown>[];
  };
  const lines = doc.nftables.map((cmd) => {
    const [verb, body] = Object.entries(cmd)[0]!;
    const el = (body as Record<string, Record<string, unknown>>)["element"];
    if (!el || !Array.isArray(el["elem"])) return JSON.stringify(cmd);
    const { elem, ...head } = el;
    const items = (elem as unknown[]).map((e) => `    ${JSON.stringify(e)}`).join(",\n");
    return `{"${verb}":{"element":${JSON.stringify(head).slice(0, -1)},"elem":[\n${items}\n]}}}`;
  });
  return `{"nftables":[\n${lines.join(",\n")}\n]}\n`;
}

/** Elements of one map or set added by a batch, as nft-style text: key -> value ("" for sets). */
export function elementsOf(batch: Uint8Array, name: string): Map<string, string> {
  const doc = JSON.parse(new TextDecoder().decode(batch)) as {
    nftables: Record<string, Record<string, Record<string, unknown>>>[];
  };
  const out = new Map<string, string>();
  for (const cmd of doc.nftables) {
    const el = cmd["add"]?.["element"];
    if (!el || el["name"] !== name) continue;
    for (const e of el["elem"] as unknown[]) {
      if (Array.isArray(e)) {
        const v = e[1];
        out.set(renderExpr(e[0]), typeof v === "object" ? renderStmt(v) : renderExpr(v));
      } else {
        out.set(renderExpr(e), "");
      }
    }
  }
  return out;
}

/** Rules added to one chain, as nft-style text. */
export function rulesOf(batch: Uint8Array, chain: string): string[] {
  const doc = JSON.parse(new TextDecoder().decode(batch)) as {
    nftables: Record<string, Record<string, Record<string, unknown>>>[];
  };
  return doc.nftables
    .map((c) => c["add"]?.["rule"])
    .filter((r) => r && r["chain"] === chain)
    .map((r) => (r!["expr"] as unknown[]).map(renderStmt).join(" "));
}

/** Names of chains a batch adds. */
export function chainsOf(batch: Uint8Array): string[] {
  const doc = JSON.parse(new TextDecoder().decode(batch)) as {
    nftables: Record<string, Record<string, Record<string, unknown>>>[];
  };
  return doc.nftables.map((c) => c["add"]?.["chain"]?.["name"] as string | undefined).filter((n) =>
    n !== undefined
  );
}
