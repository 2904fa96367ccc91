/**
 * What the packaging and install tests share: a minimal Debian root (no Deno,
 * no Node.js), the packaged kpx, and two ways to use the root without ever
 * changing it or the host:
 * - ThrowawayRoot: the cached root under an overlay (changes go to a
 *   temporary upper directory), entered with chroot in new mount, network,
 *   PID, UTS and IPC namespaces: nothing reaches the host's network, rules,
 *   /usr or /etc, and everything goes when the test ends.
 * - BootedRoot: the cached root booted with systemd as PID 1 by
 *   systemd-nspawn --volatile=overlay --private-network (changes in memory),
 *   to run kpx.service for real.
 *
 * Both are cached between tests and runs under .cache/package-test/:
 * the root (debootstrap --variant=minbase, ~35 s, once) and the package
 * (rebuilt when src/, wasm/build/, deploy/ or deno.json change, ~12 s).
 */
import { buildPackage } from "../deploy/package.ts";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const CACHE = `${REPO}/.cache/package-test`;
/** A node's userland: what kpx runs (nft, ip, conntrack, sysctl) and systemd. */
const INCLUDE = "nftables,iproute2,conntrack,procps,systemd";
const SUITE = "bookworm";
const MIRROR = Deno.env.get("KPX_DEBIAN_MIRROR") ?? "http://deb.debian.org/debian";
const ROOTFS = `${CACHE}/${SUITE}-minbase`;

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

export async function run(
  argv: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<Result> {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    env: { NO_COLOR: "1", ...opts.env },
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function has(cmd: string): Promise<boolean> {
  return (await run(["sh", "-c", `command -v ${cmd}`])).code === 0;
}

/**
 * What this machine lacks for the tests (empty: all there). Debian packages
 * are named; test/setup.sh installs them.
 */
export async function missingPrereqs(opts: { boot?: boolean } = {}): Promise<string[]> {
  const missing: string[] = [];
  if (Deno.uid() !== 0) missing.push("root (namespaces, chroot, overlay mounts)");
  for (const [cmd, pkg] of [["unshare", "util-linux"], ["debootstrap", "debootstrap"]]) {
    if (!await has(cmd!)) missing.push(`${cmd} (Debian package ${pkg})`);
  }
  if (!(await Deno.readTextFile("/proc/filesystems")).includes("\toverlay")) {
    missing.push("overlay file system support in the kernel");
  }
  if (opts.boot && !await has("systemd-nspawn")) {
    missing.push("systemd-nspawn (Debian package systemd-container)");
  }
  return missing;
}

/**
 * Deno.test options for a test needing `missing` to be empty: skipped with a
 * message on a developer's machine; run, and so failed, under CI (a skipped
 * test there would hide a missing install step): ensureRootfs() and
 * BootedRoot.boot() name what is missing.
 */
export function prereqGate(missing: string[], what: string): { ignore: boolean } {
  if (missing.length === 0) return { ignore: false };
  const msg = `${what}: this machine lacks ${missing.join(", ")}`;
  if (Deno.env.get("CI") === "true") {
    console.error(`${msg} (CI: running them anyway, to fail)`);
    return { ignore: false };
  }
  console.error(`skipping ${msg}`);
  return { ignore: true };
}

async function requirePrereqs(opts: { boot?: boolean } = {}): Promise<void> {
  const missing = await missingPrereqs(opts);
  if (missing.length) {
    throw new Error(
      `Cannot set up the minimal Debian root: this machine lacks ${
        missing.join(", ")
      } (test/setup.sh installs the packages)`,
    );
  }
}

/** The minimal Debian root, made once (debootstrap) and reused. */
export async function ensureRootfs(): Promise<string> {
  await requirePrereqs();
  const stamp = `${ROOTFS}/ready`;
  const want = `${SUITE} minbase ${INCLUDE}`;
  if (await exists(stamp) && (await Deno.readTextFile(stamp)).trim() === want) {
    return `${ROOTFS}/rootfs`;
  }
  await Deno.mkdir(CACHE, { recursive: true });
  // Built beside, then renamed: an interrupted debootstrap never looks ready.
  const tmp = await Deno.makeTempDir({ dir: CACHE, prefix: "rootfs.tmp-" });
  try {
    const r = await run([
      "debootstrap",
      "--variant=minbase",
      `--include=${INCLUDE}`,
      SUITE,
      tmp,
      MIRROR,
    ]);
    if (r.code !== 0) {
      throw new Error(
        `Cannot make the minimal Debian root: debootstrap ${SUITE} from ${MIRROR} exited with status ${r.code}: ${
          (r.stderr || r.stdout).trim().split("\n").slice(-5).join("; ")
        }`,
      );
    }
    await Deno.remove(ROOTFS, { recursive: true }).catch(() => {});
    await Deno.mkdir(ROOTFS, { recursive: true });
    await Deno.rename(tmp, `${ROOTFS}/rootfs`);
    await Deno.writeTextFile(stamp, want + "\n");
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return `${ROOTFS}/rootfs`;
}

async function inputsHash(): Promise<string> {
  const files: string[] = [`${REPO}/deno.json`, `${REPO}/deno.lock`];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile) files.push(p);
    }
  };
  for (const d of ["src", "wasm/build", "deploy"]) await walk(`${REPO}/${d}`);
  files.sort();
  const parts: Uint8Array[] = [];
  for (const f of files) {
    parts.push(new TextEncoder().encode(f + "\0"), await Deno.readFile(f));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The packaged kpx for the current sources, built once per change. */
export async function ensurePackage(): Promise<string> {
  const key = await inputsHash();
  const dir = `${CACHE}/package-${key}`;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith("kpx-") && !e.name.endsWith(".sha256")) return `${dir}/${e.name}`;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(CACHE, { recursive: true });
  // Older packages go: one per source state is enough.
  for await (const e of Deno.readDir(CACHE)) {
    if (e.name.startsWith("package-")) await Deno.remove(`${CACHE}/${e.name}`, { recursive: true });
  }
  const r = await buildPackage({ outDir: dir, log: () => {} });
  return r.path;
}

/** The commit `kpx version` must show: the one wasm/build.ts recorded. */
export async function builtCommit(): Promise<string> {
  const text = await Deno.readTextFile(`${REPO}/wasm/build/build_info.ts`);
  const m = /commit: "([^"]+)"/.exec(text);
  if (!m) throw new Error("Cannot read the commit from wasm/build/build_info.ts");
  return m[1]!;
}

export interface ShOptions {
  /** Host path -> path in the root, mounted read-only. */
  binds?: Record<string, string>;
  env?: Record<string, string>;
}

/**
 * The cached root under a throwaway overlay. Each sh() enters it afresh
 * (new namespaces each time); the overlay's upper directory carries files
 * from one sh() to the next.
 */
export class ThrowawayRoot implements AsyncDisposable {
  private constructor(readonly lower: string, readonly dir: string) {}

  static async create(): Promise<ThrowawayRoot> {
    const lower = await ensureRootfs();
    const dir = await Deno.makeTempDir({ prefix: "kpx-root-" });
    for (const d of ["upper", "work", "merged"]) await Deno.mkdir(`${dir}/${d}`);
    return new ThrowawayRoot(lower, dir);
  }

  /** What the tests wrote into the root so far, as paths relative to it. */
  get upper(): string {
    return `${this.dir}/upper`;
  }

  /** Runs a bash script as root inside the root, with no network but lo. */
  sh(script: string, opts: ShOptions = {}): Promise<Result> {
    const binds = Object.entries(opts.binds ?? {})
      .map(([host, inside]) => {
        const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
        const target = q(`${this.dir}/merged${inside}`);
        return `if [ -d ${
          q(host)
        } ]; then mkdir -p ${target}; else mkdir -p "$(dirname ${target})"; [ -e ${target} ] || touch ${target}; fi; mount --bind ${
          q(host)
        } ${target}; mount -o remount,bind,ro ${target}`;
      })
      .join("\n");
    const env = Object.entries({
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      ...opts.env,
    }).map(([k, v]) => `${k}=${v}`);
    // Mounts live in the new mount namespace only: they vanish with it.
    const setup = `set -euo pipefail
m=${this.dir}/merged
mount -t overlay overlay -o lowerdir=${this.lower},upperdir=${this.dir}/upper,workdir=${this.dir}/work "$m"
mount -t proc proc "$m/proc"
mount -t sysfs -o ro sysfs "$m/sys"
mount --rbind /dev "$m/dev"
mount -t tmpfs tmpfs "$m/run"
mkdir -p "$m/run/netns"
${binds}
ip link set lo up
exec chroot "$m" /usr/bin/env -i "$@"`;
    return run([
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "--net",
      "--pid",
      "--fork",
      "--uts",
      "--ipc",
      "bash",
      "-c",
      setup,
      "bash",
      ...env,
      "bash",
      "-c",
      script,
    ]);
  }

  /**
   * Runs a bash script on the host's userland with the root mounted at $ROOT
   * (in a new mount and network namespace): for install.sh --root.
   */
  hostSh(script: string, env: Record<string, string> = {}): Promise<Result> {
    const setup = `set -euo pipefail
mount -t overlay overlay -o lowerdir=${this.lower},upperdir=${this.dir}/upper,workdir=${this.dir}/work ${this.dir}/merged
export ROOT=${this.dir}/merged
exec bash -c "$1"`;
    return run(
      [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--net",
        "bash",
        "-c",
        setup,
        "bash",
        script,
      ],
      { env },
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Paths (relative) of everything under `dir`, with type and size, for before/after comparisons. */
export async function snapshot(
  dir: string,
  skip: (rel: string) => boolean = () => false,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${dir}${rel}`)) {
      const r = `${rel}/${e.name}`;
      if (skip(r)) continue;
      const st = await Deno.lstat(`${dir}${r}`);
      out.set(
        r,
        `${e.isDirectory ? "d" : e.isSymlink ? "l" : "f"} ${
          st.mode?.toString(8)
        } ${st.size} ${st.mtime?.getTime()}`,
      );
      if (e.isDirectory) await walk(r);
    }
  };
  await walk("");
  return out;
}

/**
 * The cached root booted by systemd-nspawn: systemd is PID 1, the network
 * namespace has only lo, and every change lives in memory (--volatile=overlay).
 */
export class BootedRoot implements AsyncDisposable {
  private constructor(readonly child: Deno.ChildProcess, readonly init: number) {}

  static async boot(binds: Record<string, string>): Promise<BootedRoot> {
    await requirePrereqs({ boot: true });
    const rootfs = await ensureRootfs();
    const child = new Deno.Command("systemd-nspawn", {
      args: [
        "--quiet",
        `--directory=${rootfs}`,
        "--volatile=overlay",
        "--private-network",
        "--register=no",
        "--keep-unit",
        "--console=passive",
        ...Object.entries(binds).map(([host, inside]) => `--bind-ro=${host}:${inside}`),
        "--boot",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const errText = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const deadline = Date.now() + 60_000;
    // The container's systemd is nspawn's child; wait until it says the
    // system is up.
    for (;;) {
      if (Date.now() > deadline) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        const err = await errText.read().then((r) => r.value ?? "");
        throw new Error(`Cannot boot the Debian root with systemd-nspawn within 60 s: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 250));
      let kids = "";
      try {
        kids = await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`);
      } catch {
        continue;
      }
      const init = Number(kids.trim().split(/\s+/)[0]);
      if (!init) continue;
      const state = await run([
        "nsenter",
        "-t",
        String(init),
        "-a",
        "systemctl",
        "is-system-running",
      ]);
      if (/^(running|degraded)/.test(state.stdout.trim())) {
        void errText.cancel();
        return new BootedRoot(child, init);
      }
    }
  }

  /** Runs a bash script inside the booted root (all of its namespaces). */
  sh(script: string): Promise<Result> {
    return run(["nsenter", "-t", String(this.init), "-a", "bash", "-c", script]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // SIGTERM makes nspawn power the container off; SIGKILL if it hangs.
    try {
      this.child.kill("SIGTERM");
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 20_000);
    await this.child.status;
    clearTimeout(timer);
  }
}
