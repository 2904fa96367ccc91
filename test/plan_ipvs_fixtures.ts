/**
 * IPVS-mode plan fixtures: every fixture of test/fixtures/plan/ planned in
 * IPVS mode, plus the IPVS-only ones in test/fixtures/ipvs/<name>/ (which
 * have their own manifests.yaml and config.yaml). Expected outputs of both
 * live in test/fixtures/ipvs/<name>/.
 */
import { type Config, loadConfig } from "../src/config/mod.ts";
import { type ManifestPlan, planManifests } from "../src/cli/planning.ts";
import { Planner } from "../src/planner/mod.ts";
import { parseManifests } from "../src/source/mod.ts";
import { FIXTURE_DIR, fixtureNames } from "./plan_fixtures.ts";

export const IPVS_FIXTURE_DIR = new URL("./fixtures/ipvs/", import.meta.url).pathname;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** IPVS-only fixtures: directories of test/fixtures/ipvs/ with their own manifests. */
function ownFixtures(): string[] {
  return [...Deno.readDirSync(IPVS_FIXTURE_DIR)]
    .filter((e) => e.isDirectory && exists(`${IPVS_FIXTURE_DIR}${e.name}/manifests.yaml`))
    .map((e) => e.name);
}

export function ipvsFixtureNames(): string[] {
  return [...new Set([...fixtureNames(), ...ownFixtures()])].sort();
}

/** The fixture's own directory if it has manifests, else test/fixtures/plan/'s. */
function sourceDir(name: string): string {
  return exists(`${IPVS_FIXTURE_DIR}${name}/manifests.yaml`)
    ? `${IPVS_FIXTURE_DIR}${name}/`
    : `${FIXTURE_DIR}${name}/`;
}

export function ipvsFixtureConfig(name: string): Config {
  const path = `${sourceDir(name)}config.yaml`;
  const text = exists(path) ? Deno.readTextFileSync(path) : "";
  const flags: Array<[string, string]> = [["proxy-mode", "ipvs"]];
  return loadConfig({ ...(text ? { file: { path: "config.yaml", text } } : {}), flags }).config;
}

let planner: Planner | undefined;

export async function planIPVSFixture(name: string): Promise<ManifestPlan> {
  planner ??= await Planner.load();
  const text = await Deno.readTextFile(`${sourceDir(name)}manifests.yaml`);
  return planManifests(parseManifests(text, "manifests.yaml"), ipvsFixtureConfig(name), {
    planner,
  });
}
