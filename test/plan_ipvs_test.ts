/**
 * IPVS mode's plans, golden: every fixture of test/fixtures/plan/ (with mode
 * ipvs) and the IPVS-only ones of test/fixtures/ipvs/ must plan to exactly
 * the checked-in virtual services (expected.ipvs, ipvsadm-restore format plus
 * kube-ipvs0's addresses), nftables batch (expected.json) and warnings.
 * After an intended change, regenerate with
 * `UPDATE_GOLDEN=1 deno test -A test/plan_ipvs_test.ts` and review the diff.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { IPVS_FIXTURE_DIR, ipvsFixtureNames, planIPVSFixture } from "./plan_ipvs_fixtures.ts";
import { goldenText } from "./plan_fixtures.ts";
import { allServices, isIPVSPlanOutput, renderIPVSPlan, serviceKey } from "../src/planner/mod.ts";

const update = Deno.env.get("UPDATE_GOLDEN") === "1";

for (const name of ipvsFixtureNames()) {
  Deno.test(`ipvs golden: ${name}`, async () => {
    const result = await planIPVSFixture(name);
    ok(isIPVSPlanOutput(result.plan));
    const ipvs = renderIPVSPlan(result.plan.ipvs);
    const batch = goldenText(result.plan.batch);
    const warnings = result.warnings.map((w) => w + "\n").join("");
    const dir = `${IPVS_FIXTURE_DIR}${name}`;
    if (update) {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/expected.ipvs`, ipvs);
      await Deno.writeTextFile(`${dir}/expected.json`, batch);
      await Deno.writeTextFile(`${dir}/expected.warnings`, warnings);
      return;
    }
    equal(
      ipvs,
      await Deno.readTextFile(`${dir}/expected.ipvs`),
      `${name}: IPVS state differs from expected.ipvs`,
    );
    equal(
      batch,
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

Deno.test("ipvs plan: planning twice gives identical bytes and records", async () => {
  for (const name of ipvsFixtureNames()) {
    const a = (await planIPVSFixture(name)).plan;
    const b = (await planIPVSFixture(name)).plan;
    equal(new TextDecoder().decode(a.batch), new TextDecoder().decode(b.batch), name);
    ok(isIPVSPlanOutput(a) && isIPVSPlanOutput(b));
    deepEqual(a.ipvs, b.ipvs, name);
  }
});

Deno.test("ipvs plan: virtual services are sorted and unique, each address kind where expected", async () => {
  const lb = (await planIPVSFixture("loadbalancer")).plan;
  ok(isIPVSPlanOutput(lb));
  const keys = allServices(lb.ipvs.records).map(serviceKey);
  deepEqual(keys, [...new Set(keys)].sort());
  const np = (await planIPVSFixture("nodeport-dual-stack")).plan;
  ok(isIPVSPlanOutput(np));
  const npKeys = allServices(np.ipvs.records).map(serviceKey);
  for (
    const k of [
      "-t 192.0.2.10:30080",
      "-t [2001:db8::10]:30080",
      "-t 198.51.100.20:80",
      "-t [2001:db8:2::20]:80",
    ]
  ) {
    ok(npKeys.includes(k), `${k} in ${npKeys.join(", ")}`);
  }
  // eTP=Local: the IPv6 external virtual services have no local endpoint.
  const v6lb = allServices(np.ipvs.records).find((s) => serviceKey(s) === "-t [2001:db8:2::20]:80");
  deepEqual(v6lb?.reals, []);
  deepEqual(np.ipvs.addresses, ["10.96.0.10", "198.51.100.20", "2001:db8:2::20", "fd00:10:96::10"]);
});

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;

async function kpx(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("kpx plan --proxy-mode ipvs prints the virtual services, kube-ipvs0's addresses, then the batch", async () => {
  const dir = `${IPVS_FIXTURE_DIR}scheduler-mh`;
  const r = await kpx(
    "plan",
    "--config",
    `${dir}/config.yaml`,
    "--proxy-mode",
    "ipvs",
    `${dir}/manifests.yaml`,
  );
  equal(r.code, 0, r.stderr);
  const [ipvs, batch = ""] = r.stdout.split("# nftables\n");
  equal(ipvs, await Deno.readTextFile(`${dir}/expected.ipvs`));
  ok(batch.startsWith("add table inet kpx\n"), batch);
  ok(
    batch.includes(
      "add chain inet kpx nat-prerouting { type nat hook prerouting priority -100; policy accept; }",
    ),
  );
  const json = await kpx(
    "plan",
    "--config",
    `${dir}/config.yaml`,
    "-o",
    "json",
    `${dir}/manifests.yaml`,
  );
  equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as {
    ipvs: { addresses: string[] };
    nftables: { nftables: unknown[] };
  };
  deepEqual(doc.ipvs.addresses, ["10.96.0.10"]);
  ok(doc.nftables.nftables.length > 20);
});
