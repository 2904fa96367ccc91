/**
 * Golden tests: each fixture's manifests must plan to exactly the checked-in
 * batch and warnings. After an intended change, regenerate with
 * `UPDATE_GOLDEN=1 deno task test test/plan_golden_test.ts` and review the diff.
 */
import { equal } from "node:assert/strict";
import { FIXTURE_DIR, fixtureNames, goldenText, planFixture } from "./plan_fixtures.ts";

const update = Deno.env.get("UPDATE_GOLDEN") === "1";

for (const name of fixtureNames()) {
  Deno.test(`plan golden: ${name}`, async () => {
    const result = await planFixture(name);
    const got = goldenText(result.plan.batch);
    const warnings = result.warnings.map((w) => w + "\n").join("");
    const dir = `${FIXTURE_DIR}${name}`;
    if (update) {
      await Deno.writeTextFile(`${dir}/expected.json`, got);
      await Deno.writeTextFile(`${dir}/expected.warnings`, warnings);
      return;
    }
    equal(
      got,
      await Deno.readTextFile(`${dir}/expected.json`),
      `${name}: batch differs from expected.json`,
    );
    equal(
      warnings,
      await Deno.readTextFile(`${dir}/expected.warnings`),
      `${name}: warnings differ`,
    );
  });
}

Deno.test("plan golden: planning twice gives identical bytes", async () => {
  for (const name of fixtureNames()) {
    const a = await planFixture(name);
    const b = await planFixture(name);
    equal(new TextDecoder().decode(a.plan.batch), new TextDecoder().decode(b.plan.batch), name);
  }
});
