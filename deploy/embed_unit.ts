/**
 * Copies systemd/kpx.service into install.sh, between the `cat <<'UNIT'` and
 * `UNIT` lines of unit_text(), so that install.sh and the artifact are all a
 * node needs. Run after editing the unit:
 *   deno run --allow-read --allow-write=install.sh deploy/embed_unit.ts
 * test/install_test.ts fails while the two differ.
 */

const ROOT = new URL("..", import.meta.url).pathname;
const START = "  cat <<'UNIT'\n";
const END = "\nUNIT\n";

/** The unit text embedded in install.sh. */
export function embeddedUnit(installSh: string): string {
  const a = installSh.indexOf(START);
  const b = installSh.indexOf(END, a);
  if (a < 0 || b < 0) {
    throw new Error("Cannot find the unit in install.sh: no cat <<'UNIT' ... UNIT block");
  }
  return installSh.slice(a + START.length, b + 1);
}

/** install.sh with `unit` embedded. */
export function withUnit(installSh: string, unit: string): string {
  const old = embeddedUnit(installSh);
  const a = installSh.indexOf(START) + START.length;
  if (!unit.endsWith("\n")) unit += "\n";
  return installSh.slice(0, a) + unit + installSh.slice(a + old.length);
}

if (import.meta.main) {
  const sh = await Deno.readTextFile(`${ROOT}install.sh`);
  const unit = await Deno.readTextFile(`${ROOT}systemd/kpx.service`);
  const next = withUnit(sh, unit);
  if (next === sh) console.log("install.sh already embeds systemd/kpx.service");
  else {
    await Deno.writeTextFile(`${ROOT}install.sh`, next);
    console.log("install.sh now embeds systemd/kpx.service");
  }
}
