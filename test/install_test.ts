/**
 * install.sh and systemd/kpx.service, never on the host: on a throwaway
 * overlay of a minimal Debian root (chroot, own network namespace), with
 * --root from outside, and in that root booted with systemd (systemd-nspawn)
 * where kpx.service really runs under its hardening and programs rules in the
 * container's own network namespace.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { embeddedUnit } from "../deploy/embed_unit.ts";
import {
  BootedRoot,
  ensurePackage,
  missingPrereqs,
  prereqGate,
  REPO,
  run,
  snapshot,
  ThrowawayRoot,
} from "./_package_root.ts";

const FIXTURE = `${REPO}/test/fixtures/plan/clusterip`;
const UNIT = `${REPO}/systemd/kpx.service`;
/** The exposure systemd-analyze security may give the unit (docs/install.md states it). */
const MAX_EXPOSURE = 2.0;
const gate = prereqGate(await missingPrereqs(), "the install tests");
const bootGate = prereqGate(await missingPrereqs({ boot: true }), "the systemd unit test");

async function tool(cmd: string, pkg: string): Promise<{ ignore: boolean }> {
  const found = (await run(["sh", "-c", `command -v ${cmd}`])).code === 0;
  return prereqGate(found ? [] : [`${cmd} (Debian package ${pkg})`], `the ${cmd} test`);
}

/** The package beside install.sh, as an operator copies them onto a node. */
async function binds(): Promise<Record<string, string>> {
  const pkg = await ensurePackage();
  return {
    [`${REPO}/install.sh`]: "/opt/kpx/install.sh",
    [pkg]: `/opt/kpx/${pkg.slice(pkg.lastIndexOf("/") + 1)}`,
    [FIXTURE]: "/opt/fixture",
  };
}

/** Files and links (not directories) in the overlay's upper layer, outside the mount points. */
async function writtenFiles(root: ThrowawayRoot, skip: RegExp): Promise<string[]> {
  const snap = await snapshot(root.upper);
  return [...snap].filter(([p, s]) => !s.startsWith("d") && !p.startsWith("/opt/") && !skip.test(p))
    .map(([p]) => p).sort();
}

const KPX_PATHS = [
  "/usr/local/bin/kpx",
  "/etc/kpx",
  "/etc/systemd/system/kpx.service",
  "/etc/systemd/system/multi-user.target.wants/kpx.service",
  "/var/lib/kpx",
  "/var/cache/kpx",
];

Deno.test("install.sh carries systemd/kpx.service byte for byte", async () => {
  const embedded = embeddedUnit(await Deno.readTextFile(`${REPO}/install.sh`));
  equal(
    embedded,
    await Deno.readTextFile(UNIT),
    "install.sh's copy of the unit is stale: deno run --allow-read --allow-write=install.sh deploy/embed_unit.ts",
  );
});

Deno.test({
  name: "shellcheck passes on install.sh and the package launcher",
  ...await tool("shellcheck", "shellcheck"),
  fn: async () => {
    const r = await run(["shellcheck", `${REPO}/install.sh`, `${REPO}/deploy/launcher.sh`]);
    equal(r.code, 0, r.stdout + r.stderr);
  },
});

Deno.test({
  name: `systemd-analyze security rates the unit's exposure at most ${MAX_EXPOSURE}`,
  ...await tool("systemd-analyze", "systemd"),
  fn: async () => {
    const r = await run(["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT]);
    const m = /Overall exposure level for kpx\.service: ([\d.]+)/.exec(r.stdout + r.stderr);
    ok(m, `no exposure level in: ${r.stdout}${r.stderr}`);
    const score = Number(m[1]);
    console.log(`systemd-analyze security: exposure ${score}`);
    ok(score <= MAX_EXPOSURE, `exposure ${score} > ${MAX_EXPOSURE}:\n${r.stdout}`);
  },
});

Deno.test({
  name:
    "install.sh installs into a minimal Debian root, a second run changes nothing, --uninstall removes it all",
  ...gate,
  fn: async () => {
    const b = await binds();
    await using root = await ThrowawayRoot.create();

    const dry = await root.sh("/opt/kpx/install.sh --dry-run", { binds: b });
    equal(dry.code, 0, dry.stderr);
    match(dry.stdout, /would install \/usr\/local\/bin\/kpx/);
    match(dry.stdout, /dry run: nothing changed/);
    deepEqual(await writtenFiles(root, /^$/), [], "--dry-run wrote files");

    const first = await root.sh("/opt/kpx/install.sh", { binds: b });
    equal(first.code, 0, first.stdout + first.stderr);
    match(first.stdout, /check: nft is installed/);
    match(first.stdout, /check: the kernel has nftables/);
    match(first.stdout, /check: no kube-proxy here/);
    match(first.stdout, /^install\.sh: install \/usr\/local\/bin\/kpx$/m);
    match(first.stdout, /systemd is not running: kpx\.service is enabled/);

    const check = await root.sh(
      `set -e
       kpx version | head -n 1
       test "$(readlink /etc/systemd/system/multi-user.target.wants/kpx.service)" = /etc/systemd/system/kpx.service
       systemd-analyze verify /etc/systemd/system/kpx.service
       kpx plan --config /etc/kpx/config.yaml -o json /opt/fixture/manifests.yaml >/dev/null
       cat /var/lib/kpx/install.manifest`,
      { binds: b },
    );
    equal(check.code, 0, check.stdout + check.stderr);
    match(check.stdout, /^kpx /);
    match(check.stdout, /^config \/etc\/kpx\/config\.yaml [0-9a-f]{64}$/m);

    // The V8 code cache Deno keeps in the package's cache may be touched by
    // any run of kpx (install.sh runs `kpx version`); it is not install.sh's.
    // /tmp's own mtime changes with install.sh's temporary files (removed
    // again); /opt holds the test's mount points.
    const skip = (p: string) =>
      /^\/var\/cache\/kpx\/[^/]+\/deno-dir(\/|$)/.test(p) || /^\/(tmp|opt)(\/|$)/.test(p);
    const before = await snapshot(root.upper, skip);
    const second = await root.sh("/opt/kpx/install.sh", { binds: b });
    equal(second.code, 0, second.stdout + second.stderr);
    ok(!/^install\.sh: (install|update|enable|remove) /m.test(second.stdout), second.stdout);
    match(second.stdout, /\/usr\/local\/bin\/kpx \(unchanged\)/);
    const after = await snapshot(root.upper, skip);
    const diff = [...new Set([...before.keys(), ...after.keys()])]
      .filter((p) => before.get(p) !== after.get(p))
      .map((p) => `${p}: ${before.get(p) ?? "-"} -> ${after.get(p) ?? "-"}`);
    deepEqual(diff, [], `the second install.sh run changed files: ${diff.join("; ")}`);

    const gone = await root.sh("/opt/kpx/install.sh --uninstall", { binds: b });
    equal(gone.code, 0, gone.stdout + gone.stderr);
    match(gone.stdout, /remove kpx's nftables rules \(kpx cleanup\)/);
    match(gone.stdout, /remove \/etc\/kpx\/config\.yaml/);
    const left = await root.sh(KPX_PATHS.map((p) => `test ! -e ${p}`).join(" && "));
    equal(left.code, 0, "something of kpx's is left after --uninstall");
    deepEqual(await writtenFiles(root, /^$/), [], "--uninstall left files behind");
    const again = await root.sh("/opt/kpx/install.sh --uninstall", { binds: b });
    equal(again.code, 0, again.stderr);
    match(again.stdout, /kpx is not installed: nothing to remove/);
  },
});

Deno.test({
  name: "install.sh never replaces a configuration and --uninstall keeps one changed since",
  ...gate,
  fn: async () => {
    const b = await binds();
    await using root = await ThrowawayRoot.create();
    const r = await root.sh(
      `set -e
       /opt/kpx/install.sh >/dev/null
       echo "clusterCIDR: 10.0.0.0/8" >> /etc/kpx/config.yaml
       /opt/kpx/install.sh | grep 'existing configuration kept'
       /opt/kpx/install.sh --uninstall
       grep -q 'clusterCIDR: 10.0.0.0/8' /etc/kpx/config.yaml
       test ! -e /usr/local/bin/kpx`,
      { binds: b },
    );
    equal(r.code, 0, r.stdout + r.stderr);
    match(r.stdout, /kept \/etc\/kpx\/config\.yaml: changed since install\.sh wrote it/);
  },
});

Deno.test({
  name:
    "install.sh refuses beside kube-proxy, without nft, or with a broken artifact, unless --force",
  ...gate,
  fn: async (t) => {
    const b = await binds();
    await using root = await ThrowawayRoot.create();
    const refuses = async (name: string, setup: string, why: RegExp, args = "") => {
      await t.step(name, async () => {
        const r = await root.sh(`${setup}\n/opt/kpx/install.sh ${args}`, { binds: b });
        equal(r.code, 1, r.stdout + r.stderr);
        match(r.stderr, why);
        const none = await root.sh("test ! -e /usr/local/bin/kpx && test ! -e /etc/kpx");
        equal(none.code, 0, `${name}: install.sh installed something`);
      });
    };
    await refuses(
      "a kube-proxy process",
      "cp /usr/bin/sleep /tmp/kube-proxy && /tmp/kube-proxy 60 &\nsleep 0.2",
      /a kube-proxy process is running \(pid \d+\)/,
    );
    await refuses(
      "kube-proxy's nftables table",
      "nft add table ip kube-proxy",
      /kube-proxy's nftables tables exist/,
    );
    await refuses(
      "kube-proxy's iptables-nft chain",
      "nft add table ip nat && nft add chain ip nat KUBE-SERVICES",
      /kube-proxy's iptables chain KUBE-SERVICES exists \(iptables-nft\)/,
    );
    await refuses(
      "no nft",
      "mv /usr/sbin/nft /usr/sbin/nft.away; trap 'mv /usr/sbin/nft.away /usr/sbin/nft' EXIT",
      /nft is not installed: kpx loads its rules with it \(Debian\/Ubuntu: apt-get install nftables\)/,
    );
    const pkg = Object.values(b).find((p) => p.includes("/kpx-"))!;
    await refuses(
      "a corrupted package",
      `head -c -4096 ${pkg} > /tmp/kpx-bad`,
      /Cannot install \/tmp\/kpx-bad: it is corrupted/,
      "/tmp/kpx-bad",
    );
    await refuses(
      "a program that is not kpx",
      "",
      /Cannot install \/usr\/bin\/true: not kpx/,
      "/usr/bin/true",
    );
    await t.step("--force installs beside a kube-proxy process", async () => {
      const r = await root.sh(
        "cp /usr/bin/sleep /tmp/kube-proxy && /tmp/kube-proxy 60 &\nsleep 0.2\n/opt/kpx/install.sh --force",
        { binds: b },
      );
      equal(r.code, 0, r.stdout + r.stderr);
      match(r.stderr, /warning: a kube-proxy process is running .*\(continuing: --force\)/);
    });
  },
});

Deno.test({
  name: "install.sh --root installs into a directory and leaves the running system alone",
  ...gate,
  fn: async () => {
    const pkg = await ensurePackage();
    await using root = await ThrowawayRoot.create();
    const hostBefore = await run(["sh", "-c", "ls -d /etc/kpx /var/lib/kpx /var/cache/kpx 2>&1"]);
    const r = await root.hostSh(
      `set -e
       "$INSTALL" --root "$ROOT" "$PKG"
       test -x "$ROOT/usr/local/bin/kpx"
       test -f "$ROOT/etc/kpx/config.yaml"
       test -L "$ROOT/etc/systemd/system/multi-user.target.wants/kpx.service"
       "$INSTALL" --root "$ROOT" "$PKG" | grep -c '(unchanged)'
       "$INSTALL" --root "$ROOT" --uninstall
       test ! -e "$ROOT/usr/local/bin/kpx" && test ! -e "$ROOT/etc/kpx"`,
      { INSTALL: `${REPO}/install.sh`, PKG: pkg },
    );
    equal(r.code, 0, r.stdout + r.stderr);
    match(r.stdout, /checks of the kernel and of kube-proxy skipped: .* is not the running system/);
    match(r.stdout, /systemd is not running in /);
    match(r.stdout, /kpx cleanup skipped: .* is not the running system/);
    const hostAfter = await run(["sh", "-c", "ls -d /etc/kpx /var/lib/kpx /var/cache/kpx 2>&1"]);
    equal(hostAfter.stdout, hostBefore.stdout, "install.sh --root touched the host");
  },
});

Deno.test({
  name:
    "kpx.service runs kpx under its hardening: enabled, started, rules applied, reloaded, removed",
  ...bootGate,
  fn: async () => {
    const b = await binds();
    await using box = await BootedRoot.boot(b);
    const r = await box.sh(`set -euo pipefail
      mkdir -p /etc/kpx/manifests
      cp /opt/fixture/manifests.yaml /etc/kpx/manifests/
      # A manifests node; the conntrack table size is global: not the test's to change.
      echo 'KPX_ARGS=--manifests /etc/kpx/manifests --conntrack-max-per-core=0 --v=1' > /etc/kpx/kpx.env
      /opt/kpx/install.sh
      for i in $(seq 1 80); do nft list table inet kpx >/dev/null 2>&1 && break; sleep 0.25; done
      echo "table: $(nft list tables)"
      echo "active: $(systemctl is-active kpx)"
      pid=$(systemctl show -p MainPID --value kpx)
      grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$pid/status
      systemd-analyze security --no-pager kpx.service | tail -n 1
      systemctl reload kpx
      sleep 1
      journalctl -u kpx --no-pager -o cat | grep -c 'Configuration reloaded'
      /opt/kpx/install.sh | grep 'kpx.service (running) (unchanged)'
      /opt/kpx/install.sh --uninstall
      echo "after: $(nft list tables | wc -l) $(systemctl is-active kpx || true)"
      # /etc/kpx stays: it holds kpx.env, the operator's.
      for p in ${
      KPX_PATHS.filter((p) => p !== "/etc/kpx").join(" ")
    } /etc/kpx/config.yaml; do test ! -e $p; done
      journalctl -u kpx --no-pager -o cat | grep -iE 'level=error|SIGSYS|denied' || true`);
    equal(r.code, 0, r.stdout + r.stderr);
    match(r.stdout, /^table: table inet kpx$/m);
    match(r.stdout, /^active: active$/m);
    // CAP_NET_ADMIN (bit 12) alone, no new privileges, a seccomp filter.
    match(r.stdout, /^CapEff:\s+0000000000001000$/m);
    match(r.stdout, /^CapBnd:\s+0000000000001000$/m);
    match(r.stdout, /^NoNewPrivs:\s+1$/m);
    match(r.stdout, /^Seccomp:\s+2$/m);
    const m = /Overall exposure level for kpx\.service: ([\d.]+)/.exec(r.stdout);
    ok(m && Number(m[1]) <= MAX_EXPOSURE, r.stdout);
    match(r.stdout, /^1$/m);
    match(r.stdout, /^after: 0 inactive$/m);
    ok(!/level=error|SIGSYS|denied/i.test(r.stdout.split("after:")[1] ?? ""), r.stdout);
  },
});
