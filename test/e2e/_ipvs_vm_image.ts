/**
 * Builds (once, then reuses) the boot files of the IPVS test VM: Debian's kernel and an
 * initramfs holding busybox, kmod, the netfilter/IPVS modules and the userspace tools kpx
 * drives (ipvsadm, nft, ip, conntrack, socat), plus an optional layer with the Deno binary.
 *
 * Cache layout, under the cache dir:
 *   .lock                              flock taken while building (one builder at a time)
 *   kernel-<release>-<pkgver>-<key>/   vmlinux (or vmlinuz), base.cpio[.gz], image.json
 *   deno-<version>-<key>/              deno.cpio, layer.json
 * A product directory is filled under a temporary name and renamed into place, so its
 * existence means it is complete; readers never need the lock.
 *
 * @module
 */

import { CpioTree } from "./_ipvs_vm_cpio.ts";
import {
  exists,
  findExecutable,
  mustRun,
  runCommand,
  sha256Hex,
  sharedLibraries,
} from "./_ipvs_vm_host.ts";

/** Bump when the image layout or init changes in a way the cache key would not see. */
const RECIPE_REVISION = 2;

/** The kernel package family: Debian 12's 6.1 kernel, which has IPVS and SCTP as modules. */
const KERNEL_PACKAGE_RE = /^linux-image-6\.1\.0-(\d+)-amd64$/;

/**
 * Module trees copied into the image with everything they depend on (modules.dep closure).
 * Whole netfilter/ipv4/ipv6 trees rather than a hand list, so a later kpx test that needs
 * one more nft expression or xt match finds it; crypto/ whole because softdeps (crc32c for
 * libcrc32c, hmac for sctp) name algorithms, not files.
 */
const MODULE_PREFIXES = [
  "kernel/net/netfilter/",
  "kernel/net/ipv4/",
  "kernel/net/ipv6/",
  "kernel/net/sctp/",
  "kernel/net/bridge/",
  "kernel/net/8021q/",
  "kernel/crypto/",
  "kernel/drivers/net/veth.ko",
  "kernel/drivers/net/dummy.ko",
  "kernel/drivers/net/macvlan.ko",
  "kernel/drivers/net/ipvlan/",
  "kernel/drivers/net/vxlan/",
  "kernel/drivers/net/geneve.ko",
  "kernel/drivers/net/tun.ko",
  "kernel/drivers/net/vrf.ko",
  "kernel/drivers/net/ifb.ko",
];

/** A host tool copied into the image, with the Debian package that provides it. */
interface HostTool {
  readonly name: string;
  readonly debianPackage: string;
}

/** Userspace copied into the guest (each with the libraries ldd lists). */
export const GUEST_TOOLS: readonly HostTool[] = [
  { name: "busybox", debianPackage: "busybox-static" },
  { name: "kmod", debianPackage: "kmod" },
  { name: "ipvsadm", debianPackage: "ipvsadm" },
  { name: "nft", debianPackage: "nftables" },
  { name: "ip", debianPackage: "iproute2" },
  { name: "ss", debianPackage: "iproute2" },
  { name: "tc", debianPackage: "iproute2" },
  { name: "conntrack", debianPackage: "conntrack" },
  { name: "socat", debianPackage: "socat" },
  // /bin/sh is dash, not busybox: Debian's busybox ash runs its own applets ahead of PATH
  // (FEATURE_SH_STANDALONE), so `ip` or `modprobe` in a script would be busybox's, and its
  // ip has no netns, its modprobe fails on Debian's modules.
  { name: "dash", debianPackage: "dash" },
  // Busybox applets that start other programs also prefer applets to PATH (`env ip ...`
  // would run busybox ip): the commonly used ones come from the host instead.
  { name: "env", debianPackage: "coreutils" },
  { name: "timeout", debianPackage: "coreutils" },
  { name: "nice", debianPackage: "coreutils" },
  { name: "nohup", debianPackage: "coreutils" },
  { name: "chroot", debianPackage: "coreutils" },
  { name: "xargs", debianPackage: "findutils" },
  { name: "nsenter", debianPackage: "util-linux" },
  { name: "unshare", debianPackage: "util-linux" },
  { name: "setsid", debianPackage: "util-linux" },
  { name: "taskset", debianPackage: "util-linux" },
];

/** Host tools needed to build the image (not copied into it). */
export const BUILD_TOOLS: readonly HostTool[] = [
  { name: "apt-get", debianPackage: "apt" },
  { name: "apt-cache", debianPackage: "apt" },
  { name: "dpkg-deb", debianPackage: "dpkg" },
  { name: "depmod", debianPackage: "kmod" },
  { name: "ldd", debianPackage: "libc-bin" },
];

/** kmod is one binary that behaves as modprobe, insmod... by the name it is called with. */
const KMOD_NAMES = ["modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod"];

/** Boot files of the VM, as returned by {@linkcode ensureVmImage}. */
export interface VmImage {
  /** Directory of this image in the cache. */
  readonly dir: string;
  /** Path of the kernel: the uncompressed ELF vmlinux (booted through PVH), or the bzImage
   * when xz was not available to unpack it. */
  readonly kernel: string;
  /** Path of the base initramfs (newc cpio, gzip-compressed if built with `gzip: true`). */
  readonly initrd: string;
  /** Path of the uncompressed cpio layer holding /usr/bin/deno, when built with `deno: true`. */
  readonly denoLayer?: string;
  /** Version of the Deno binary in {@linkcode denoLayer}. */
  readonly denoVersion?: string;
  /** Debian package the kernel comes from, e.g. "linux-image-6.1.0-56-amd64". */
  readonly kernelPackage: string;
  /** Its Debian version, e.g. "6.1.192-2". */
  readonly kernelPackageVersion: string;
  /** `uname -r` inside the guest, e.g. "6.1.0-56-amd64". */
  readonly kernelRelease: string;
}

/** Options of {@linkcode ensureVmImage}. */
export interface VmImageOptions {
  /** Cache directory; default env KPX_VM_CACHE, else `<repo>/.cache/ipvs-vm`. */
  cacheDir?: string;
  /** Exact kernel package (e.g. "linux-image-6.1.0-56-amd64"); default env
   * KPX_VM_KERNEL_PACKAGE, else the newest linux-image-6.1.0-N-amd64 apt knows. */
  kernelPackage?: string;
  /** Also build the layer with the Deno binary (about 95 MB). */
  deno?: boolean;
  /** Deno binary to put in the guest; default env KPX_VM_DENO, else the running Deno. */
  denoBinary?: string;
  /** More module paths or prefixes (relative to lib/modules/<release>/) to include. */
  extraModules?: readonly string[];
  /**
   * Gzip the base initramfs (13 MB instead of 35 MB). Default false: measured here, the
   * guest's gunzip under TCG costs about 0.5 s of every boot (2.3 s → 2.8 s).
   */
  gzip?: boolean;
  /** Receives one line per build step (default: nothing). */
  log?: (line: string) => void;
}

interface ImageMeta {
  readonly recipeRevision: number;
  readonly kernelFile: string;
  readonly initrdFile: string;
  readonly kernelPackage: string;
  readonly kernelPackageVersion: string;
  readonly kernelRelease: string;
  readonly modules: number;
  readonly manifest: string;
}

/** A kernel package and the exact version to download. */
export interface KernelChoice {
  readonly name: string;
  readonly version: string;
}

/** The default cache directory: `<repo>/.cache/ipvs-vm`, or env KPX_VM_CACHE. */
export function defaultCacheDir(): string {
  const fromEnv = Deno.env.get("KPX_VM_CACHE");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return decodeURIComponent(new URL("../../.cache/ipvs-vm", import.meta.url).pathname);
}

/**
 * Returns the VM image for the newest (or the requested) kernel package, building it when
 * the cache does not have it. Safe to call from several processes at once: builders take a
 * lock, and finished images are published by an atomic rename.
 */
export async function ensureVmImage(options: VmImageOptions = {}): Promise<VmImage> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const log = options.log ?? (() => {});
  await Deno.mkdir(cacheDir, { recursive: true });

  const tools = await resolveTools(GUEST_TOOLS);
  const kernel = await chooseKernel(cacheDir, options.kernelPackage, log);
  const manifest = await imageManifest(kernel, tools, options);
  const key = (await sha256Hex(manifest)).slice(0, 12);
  const release = kernel.name.replace(/^linux-image-/, "");
  const imageDir = `${cacheDir}/kernel-${release}-${kernel.version}-${key}`;

  if (!(await exists(`${imageDir}/image.json`))) {
    await withBuildLock(cacheDir, async () => {
      // Another process may have finished the same image while this one waited.
      if (await exists(`${imageDir}/image.json`)) return;
      await pruneCache(cacheDir, log);
      await buildBaseImage({ cacheDir, imageDir, kernel, tools, manifest, options, log });
    });
  }
  const meta = await readMeta(imageDir);
  let image: VmImage = {
    dir: imageDir,
    kernel: `${imageDir}/${meta.kernelFile}`,
    initrd: `${imageDir}/${meta.initrdFile}`,
    kernelPackage: meta.kernelPackage,
    kernelPackageVersion: meta.kernelPackageVersion,
    kernelRelease: meta.kernelRelease,
  };
  if (options.deno === true) {
    const deno = await ensureDenoLayer(cacheDir, options.denoBinary, log);
    image = { ...image, denoLayer: deno.path, denoVersion: deno.version };
  }
  return image;
}

/** The Deno binary the guest gets when none is named: env KPX_VM_DENO, else this process's. */
export function defaultDenoBinary(): string {
  const fromEnv = Deno.env.get("KPX_VM_DENO");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return Deno.execPath();
}

/** The newest `linux-image-6.1.0-N-amd64` apt knows, with its version; undefined if none. */
export async function newestKernelPackage(): Promise<KernelChoice | undefined> {
  // One apt-cache call (each costs ~0.4 s loading apt's cache): policy takes a regex and
  // prints "<name>:" then "  Candidate: <version>" for every match.
  const policy = await runCommand("apt-cache", ["policy", "^linux-image-6\\.1\\.0-[0-9]+-amd64$"]);
  if (policy.code !== 0) {
    throw new Error(`Cannot list kernel packages: apt-cache policy: ${policy.stderr.trim()}`);
  }
  let best: { choice: KernelChoice; abi: number } | undefined;
  let name: string | undefined;
  for (const line of policy.stdout.split("\n")) {
    const header = /^(\S+):$/.exec(line);
    if (header?.[1] !== undefined) {
      name = header[1];
      continue;
    }
    const candidate = /^\s+Candidate:\s*(\S+)/.exec(line)?.[1];
    const abi = KERNEL_PACKAGE_RE.exec(name ?? "")?.[1];
    if (candidate === undefined || candidate === "(none)" || abi === undefined) continue;
    if (best === undefined || Number(abi) > best.abi) {
      best = { choice: { name: name ?? "", version: candidate }, abi: Number(abi) };
    }
  }
  return best?.choice;
}

async function candidateVersion(pkg: string): Promise<string> {
  const policy = await mustRun("apt-cache", ["policy", pkg]);
  const m = /^\s*Candidate:\s*(\S+)/m.exec(policy);
  if (m?.[1] === undefined || m[1] === "(none)") {
    throw new Error(`Cannot find a version of "${pkg}" to download: apt-cache policy has none`);
  }
  return m[1];
}

/**
 * Picks the kernel package: the one asked for, else the newest apt knows. Without apt lists
 * (offline machine), falls back to the newest image already in the cache.
 */
async function chooseKernel(
  cacheDir: string,
  requested: string | undefined,
  log: (line: string) => void,
): Promise<KernelChoice> {
  const name = requested ?? Deno.env.get("KPX_VM_KERNEL_PACKAGE");
  if (name !== undefined && name !== "") {
    if (!KERNEL_PACKAGE_RE.test(name)) {
      throw new TypeError(
        `Cannot use kernel package "${name}": expected linux-image-6.1.0-<N>-amd64`,
      );
    }
    const cached = await newestCachedImage(cacheDir, name);
    // A pinned kernel already built needs no apt access.
    if (cached !== undefined) return cached;
    return { name, version: await candidateVersion(name) };
  }
  let newest: KernelChoice | undefined;
  let aptError: unknown;
  try {
    newest = await newestKernelPackage();
  } catch (error) {
    aptError = error;
  }
  if (newest !== undefined) return newest;
  const cached = await newestCachedImage(cacheDir, undefined);
  if (cached !== undefined) {
    const why = aptError instanceof Error ? aptError.message : "no linux-image-6.1.0-<N>-amd64";
    log(`apt gave no kernel (${why}); reusing cached ${cached.name} ${cached.version}`);
    return cached;
  }
  throw new Error(
    "Cannot choose a kernel for the VM: apt knows no linux-image-6.1.0-<N>-amd64 " +
      "(run apt-get update) and the cache holds no image",
    { cause: aptError },
  );
}

/** The kernel of the newest image of this recipe in the cache (of `pkg` if given). */
export async function newestCachedImage(
  cacheDir: string,
  pkg: string | undefined,
): Promise<KernelChoice | undefined> {
  if (!(await exists(cacheDir))) return undefined;
  let best: { choice: KernelChoice; abi: number; mtime: number } | undefined;
  for await (const entry of Deno.readDir(cacheDir)) {
    if (!entry.isDirectory || !entry.name.startsWith("kernel-")) continue;
    const dir = `${cacheDir}/${entry.name}`;
    if (!(await exists(`${dir}/image.json`))) continue;
    const meta = await readMeta(dir);
    if (meta.recipeRevision !== RECIPE_REVISION) continue;
    if (pkg !== undefined && meta.kernelPackage !== pkg) continue;
    const abi = Number(KERNEL_PACKAGE_RE.exec(meta.kernelPackage)?.[1] ?? "0");
    const mtime = (await Deno.stat(dir)).mtime?.getTime() ?? 0;
    if (best === undefined || abi > best.abi || (abi === best.abi && mtime > best.mtime)) {
      best = {
        choice: { name: meta.kernelPackage, version: meta.kernelPackageVersion },
        abi,
        mtime,
      };
    }
  }
  return best?.choice;
}

async function readMeta(dir: string): Promise<ImageMeta> {
  const path = `${dir}/image.json`;
  try {
    return JSON.parse(await Deno.readTextFile(path)) as ImageMeta;
  } catch (error) {
    throw new Error(`Cannot read VM image metadata "${path}": unreadable or not JSON`, {
      cause: error,
    });
  }
}

/** Host paths of the guest tools; throws naming the Debian packages of missing ones. */
async function resolveTools(tools: readonly HostTool[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const missing: string[] = [];
  for (const tool of tools) {
    const path = await findExecutable(tool.name);
    if (path === undefined) missing.push(`${tool.name} (Debian package ${tool.debianPackage})`);
    else found.set(tool.name, path);
  }
  if (missing.length > 0) {
    throw new Error(`Cannot build the VM image: missing host tools: ${missing.join(", ")}`);
  }
  return found;
}

/**
 * Everything the base image depends on, as text: its hash is the cache key. Host tools are
 * identified by size and mtime, which change whenever their package is upgraded.
 */
async function imageManifest(
  kernel: KernelChoice,
  tools: Map<string, string>,
  options: VmImageOptions,
): Promise<string> {
  const lines = [
    `recipe ${RECIPE_REVISION}`,
    `kernel ${kernel.name} ${kernel.version}`,
    `modules ${[...MODULE_PREFIXES, ...(options.extraModules ?? [])].join(" ")}`,
    `gzip ${options.gzip === true}`,
    `xz ${(await findExecutable("xz")) ?? "none"}`,
    `init ${INIT_SCRIPT}`,
  ];
  for (const [name, path] of [...tools].sort()) {
    const info = await Deno.stat(path);
    lines.push(`tool ${name} ${path} ${info.size} ${info.mtime?.getTime() ?? 0}`);
  }
  return lines.join("\n");
}

/**
 * Runs `fn` holding an exclusive flock on `<cacheDir>/.lock`. The kernel drops the lock
 * when the process dies, so a crashed builder never leaves a stale lock behind.
 */
async function withBuildLock<T>(cacheDir: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(`${cacheDir}/.lock`, { create: true, write: true });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    // Closing the file releases the lock.
    file.close();
  }
}

/**
 * Removes, under the build lock, what no current caller can use: build directories left by
 * a builder that died (a live one would hold the lock), and products of another recipe
 * revision. Images of other kernels or module sets are kept: another test may want them.
 */
async function pruneCache(cacheDir: string, log: (line: string) => void): Promise<void> {
  for await (const entry of Deno.readDir(cacheDir)) {
    if (!entry.isDirectory) continue;
    const dir = `${cacheDir}/${entry.name}`;
    let stale = entry.name.startsWith(".build-");
    const metaFile = entry.name.startsWith("kernel-")
      ? "image.json"
      : entry.name.startsWith("deno-")
      ? "layer.json"
      : undefined;
    if (metaFile !== undefined) {
      try {
        const meta = JSON.parse(await Deno.readTextFile(`${dir}/${metaFile}`));
        stale = meta?.recipeRevision !== RECIPE_REVISION;
      } catch (error) {
        // Products are renamed into place complete, so unreadable metadata means damage.
        log(`removing ${dir}: unreadable ${metaFile} (${String(error)})`);
        stale = true;
      }
    }
    if (stale) {
      log(`removing stale ${dir}`);
      await Deno.remove(dir, { recursive: true });
    }
  }
}

interface BuildContext {
  readonly cacheDir: string;
  readonly imageDir: string;
  readonly kernel: KernelChoice;
  readonly tools: Map<string, string>;
  readonly manifest: string;
  readonly options: VmImageOptions;
  readonly log: (line: string) => void;
}

async function buildBaseImage(ctx: BuildContext): Promise<void> {
  const started = performance.now();
  // Build next to the final place (same filesystem, so the rename is atomic).
  const work = await Deno.makeTempDir({ dir: ctx.cacheDir, prefix: ".build-" });
  try {
    ctx.log(`downloading ${ctx.kernel.name}=${ctx.kernel.version}`);
    // name=version: exactly one package; a glob would download dozens of kernels.
    await mustRun("apt-get", ["download", `${ctx.kernel.name}=${ctx.kernel.version}`], {
      cwd: work,
    });
    const debs = [];
    for await (const e of Deno.readDir(work)) if (e.name.endsWith(".deb")) debs.push(e.name);
    if (debs.length !== 1) {
      throw new Error(
        `Cannot unpack the kernel: expected one .deb in ${work}, found ${debs.length}`,
      );
    }
    const kroot = `${work}/kroot`;
    await mustRun("dpkg-deb", ["-x", `${work}/${debs[0]}`, kroot]);
    await Deno.remove(`${work}/${debs[0]}`);

    const release = await onlyEntry(`${kroot}/lib/modules`);
    const out = `${work}/out`;
    await Deno.mkdir(out);
    const kernelFile = await extractKernel(`${kroot}/boot/vmlinuz-${release}`, out, ctx.log);

    ctx.log(`selecting modules of ${release}`);
    const mroot = `${work}/mroot`;
    const modules = await selectModules(kroot, mroot, release, [
      ...MODULE_PREFIXES,
      ...(ctx.options.extraModules ?? []),
    ]);

    ctx.log(`writing base initramfs (${modules.length} modules)`);
    const tree = new CpioTree();
    await addBaseSystem(tree, ctx.tools);
    await addTreeFromHost(tree, `${mroot}/lib/modules/${release}`, `/usr/lib/modules/${release}`);
    const gzip = ctx.options.gzip === true;
    const initrdFile = gzip ? "base.cpio.gz" : "base.cpio";
    await tree.writeFile(`${out}/${initrdFile}`, { gzip });

    const meta: ImageMeta = {
      recipeRevision: RECIPE_REVISION,
      kernelFile,
      initrdFile,
      kernelPackage: ctx.kernel.name,
      kernelPackageVersion: ctx.kernel.version,
      kernelRelease: release,
      modules: modules.length,
      manifest: ctx.manifest,
    };
    await Deno.writeTextFile(`${out}/image.json`, JSON.stringify(meta, null, 2) + "\n");
    await Deno.rename(out, ctx.imageDir);
    ctx.log(`built ${ctx.imageDir} in ${Math.round(performance.now() - started)} ms`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/**
 * Puts the kernel to boot in `out` and returns its file name. Debian's bzImage is
 * xz-compressed and the guest spends ~2.4 s of TCG time unpacking it; qemu boots the
 * uncompressed ELF vmlinux directly (PVH entry, CONFIG_PVH=y), so unpack it once here.
 * Without the host's xz (package xz-utils) the bzImage is kept: slower, same behaviour.
 */
async function extractKernel(
  bzImage: string,
  out: string,
  log: (line: string) => void,
): Promise<string> {
  const xz = await findExecutable("xz");
  if (xz === undefined) {
    log("xz not installed (xz-utils): keeping the compressed bzImage, boots ~2 s slower");
    await Deno.copyFile(bzImage, `${out}/vmlinuz`);
    return "vmlinuz";
  }
  const data = await Deno.readFile(bzImage);
  // The payload is the one xz stream inside the bzImage ("\xFD7zXZ\0" header magic).
  const magic = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
  let at = -1;
  for (let i = 0; i + magic.length <= data.length && at < 0; i++) {
    if (magic.every((b, j) => data[i + j] === b)) at = i;
  }
  if (at < 0) throw new Error(`Cannot unpack the kernel "${bzImage}": no xz payload found`);
  // Through a file, not a pipe: xz stops reading at the end of the stream, and the data
  // that follows it in the bzImage would make the writer fail with a broken pipe.
  const payload = `${out}/payload.xz`;
  await Deno.writeFile(payload, data.subarray(at));
  // --single-stream: ignore the bzImage's data after the payload.
  const res = await new Deno.Command(xz, {
    args: ["-dc", "--single-stream", payload],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(payload);
  const elf = res.stdout;
  if (!res.success || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) {
    throw new Error(
      `Cannot unpack the kernel "${bzImage}": xz failed or gave no ELF: ${
        new TextDecoder().decode(res.stderr).trim()
      }`,
    );
  }
  await Deno.writeFile(`${out}/vmlinux`, elf);
  return "vmlinux";
}

async function onlyEntry(dir: string): Promise<string> {
  const names = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  if (names.length !== 1 || names[0] === undefined) {
    throw new Error(`Cannot find the kernel release: ${dir} holds ${names.length} entries`);
  }
  return names[0];
}

/**
 * Copies (hard-links) the modules matching `prefixes`, and all they depend on, from the
 * unpacked kernel package into `mroot`, then runs depmod there so modprobe finds them.
 * Returns the module paths, relative to lib/modules/<release>/.
 */
async function selectModules(
  kroot: string,
  mroot: string,
  release: string,
  prefixes: readonly string[],
): Promise<string[]> {
  const src = `${kroot}/lib/modules/${release}`;
  // depmod over the whole package gives modules.dep, from which the closure is read.
  await mustRun("depmod", ["-b", kroot, release]);
  const deps = new Map<string, string[]>();
  for (const line of (await Deno.readTextFile(`${src}/modules.dep`)).split("\n")) {
    const [mod, rest] = line.split(":");
    if (mod === undefined || rest === undefined) continue;
    deps.set(mod, rest.trim() === "" ? [] : rest.trim().split(/\s+/));
  }
  const chosen = new Set<string>();
  const visit = (mod: string) => {
    if (chosen.has(mod)) return;
    chosen.add(mod);
    for (const d of deps.get(mod) ?? []) visit(d);
  };
  for (const mod of deps.keys()) if (prefixes.some((p) => mod.startsWith(p))) visit(mod);
  for (const prefix of prefixes) {
    if (![...deps.keys()].some((m) => m.startsWith(prefix))) {
      throw new Error(`Cannot select kernel modules: no module of ${release} matches "${prefix}"`);
    }
  }

  const dst = `${mroot}/lib/modules/${release}`;
  for (const mod of chosen) {
    const to = `${dst}/${mod}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.link(`${src}/${mod}`, to);
  }
  // modules.builtin* tell modprobe that built-in "modules" need no loading.
  for (const f of ["modules.builtin", "modules.builtin.modinfo", "modules.order"]) {
    await Deno.copyFile(`${src}/${f}`, `${dst}/${f}`);
  }
  await mustRun("depmod", ["-b", mroot, release]);
  return [...chosen].sort();
}

/** Adds every file under a host directory to the tree, below `guestDir`. */
async function addTreeFromHost(tree: CpioTree, hostDir: string, guestDir: string): Promise<void> {
  for await (const e of Deno.readDir(hostDir)) {
    const host = `${hostDir}/${e.name}`;
    const guest = `${guestDir}/${e.name}`;
    if (e.isDirectory) await addTreeFromHost(tree, host, guest);
    else if (e.isFile) tree.addFile(guest, { hostPath: host });
    else if (e.isSymlink) tree.addSymlink(guest, await Deno.readLink(host));
  }
}

/** Adds an executable and its libraries, at the same (merged-/usr) paths as on the host. */
async function addExecutable(tree: CpioTree, hostPath: string): Promise<void> {
  tree.addFile(hostPath, { hostPath }, 0o755);
  for (const lib of await sharedLibraries(hostPath)) tree.addFile(lib, { hostPath: lib }, 0o755);
}

async function addBaseSystem(tree: CpioTree, tools: Map<string, string>): Promise<void> {
  // Debian 12 layout: the top-level bin/sbin/lib/lib64 are symlinks into /usr.
  for (const name of ["bin", "sbin", "lib", "lib64"]) tree.addTopLevelSymlink(name, `usr/${name}`);
  for (const dir of ["/proc", "/sys", "/dev", "/run", "/root", "/work", "/kpxvm"]) {
    tree.addDir(dir);
  }
  tree.addDir("/tmp", 0o1777);
  tree.addSymlink("/var/run", "../run");
  tree.addFile("/init", { bytes: new TextEncoder().encode(INIT_SCRIPT) }, 0o755);
  for (const [etc, text] of Object.entries(ETC_FILES)) {
    tree.addFile(etc, { bytes: new TextEncoder().encode(text) });
  }
  // Name databases some tools consult (socat, conntrack); optional on the host (netbase).
  for (const etc of ["/etc/services", "/etc/protocols"]) {
    if (await exists(etc)) tree.addFile(etc, { hostPath: etc });
  }
  if (await exists("/etc/iproute2")) await addTreeFromHost(tree, "/etc/iproute2", "/etc/iproute2");

  for (const [name, path] of tools) {
    if (name === "busybox") continue;
    await addExecutable(tree, path);
  }
  tree.addSymlink("/usr/bin/sh", "dash");
  const kmod = tools.get("kmod");
  if (kmod === undefined) throw new Error("Cannot build the VM image: kmod was not resolved");
  // The kernel runs /sbin/modprobe to autoload modules (CONFIG_MODPROBE_PATH).
  for (const name of KMOD_NAMES) tree.addSymlink(`/usr/sbin/${name}`, kmod);

  const busybox = tools.get("busybox");
  if (busybox === undefined) throw new Error("Cannot build the VM image: busybox was not resolved");
  await addExecutable(tree, busybox);
  const applets = (await mustRun(busybox, ["--list"])).split("\n").filter((a) => a !== "");
  if (!applets.includes("sh") || !applets.includes("base64")) {
    throw new Error(`Cannot build the VM image: ${busybox} lacks the sh or base64 applet`);
  }
  for (const applet of applets) {
    // Real tools win over applets (see GUEST_TOOLS).
    if (["busybox", ...KMOD_NAMES].includes(applet)) continue;
    if (tree.has(`/usr/bin/${applet}`) || tree.has(`/usr/sbin/${applet}`)) continue;
    tree.addSymlink(`/usr/bin/${applet}`, busybox);
  }
}

/** Builds (or reuses) the cpio layer with the Deno binary; returns its path and version. */
async function ensureDenoLayer(
  cacheDir: string,
  denoBinary: string | undefined,
  log: (line: string) => void,
): Promise<{ path: string; version: string }> {
  const binary = denoBinary ?? defaultDenoBinary();
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(binary);
  } catch (error) {
    throw new Error(`Cannot add Deno to the VM image: cannot stat "${binary}"`, { cause: error });
  }
  const versionLine = (await mustRun(binary, ["--version"])).split("\n")[0] ?? "";
  const version = /^deno (\S+)/.exec(versionLine)?.[1];
  if (version === undefined) {
    throw new Error(
      `Cannot add Deno to the VM image: "${binary} --version" printed "${versionLine}"`,
    );
  }
  const key = (await sha256Hex(
    `recipe ${RECIPE_REVISION}\ndeno ${binary} ${info.size} ${info.mtime?.getTime() ?? 0}`,
  )).slice(0, 12);
  const dir = `${cacheDir}/deno-${version}-${key}`;
  const path = `${dir}/deno.cpio`;
  if (await exists(`${dir}/layer.json`)) return { path, version };
  await withBuildLock(cacheDir, async () => {
    if (await exists(`${dir}/layer.json`)) return;
    await pruneCache(cacheDir, log);
    log(`writing Deno ${version} layer from ${binary}`);
    const work = await Deno.makeTempDir({ dir: cacheDir, prefix: ".build-" });
    try {
      const tree = new CpioTree();
      tree.addFile("/usr/bin/deno", { hostPath: binary }, 0o755);
      for (const lib of await sharedLibraries(binary)) tree.addFile(lib, { hostPath: lib }, 0o755);
      // Uncompressed: the kernel copies it faster than it would gunzip ~35 MB under TCG.
      await tree.writeFile(`${work}/deno.cpio`, { gzip: false });
      await Deno.writeTextFile(
        `${work}/layer.json`,
        JSON.stringify({ recipeRevision: RECIPE_REVISION, deno: version, binary }, null, 2) + "\n",
      );
      await Deno.chmod(work, 0o755); // makeTempDir made it 0700
      await Deno.rename(work, dir);
    } catch (error) {
      await Deno.remove(work, { recursive: true });
      throw error;
    }
  });
  return { path, version };
}

const ETC_FILES: Record<string, string> = {
  "/etc/passwd":
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  "/etc/group": "root:x:0:\nnogroup:x:65534:\n",
  "/etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
  "/etc/nsswitch.conf":
    "passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\n",
};

/**
 * The guest's PID 1. Per-run settings come from /kpxvm/run.env (in the run's own cpio layer):
 * KPXVM_NONCE, KPXVM_MODULES, KPXVM_COLLECT. Results go to the second serial port (ttyS1),
 * which only this script writes to, so kernel messages on the console (ttyS0) never mix in;
 * they are still base64-encoded and framed by nonce-tagged markers, with byte counts.
 */
const INIT_SCRIPT = `#!/bin/sh
# PID 1 of the kpx IPVS test VM (generated by test/e2e/_ipvs_vm_image.ts).
export PATH=/usr/sbin:/usr/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
KPXVM_NONCE=none KPXVM_MODULES= KPXVM_COLLECT=
. /kpxvm/run.env
mrc=0
: > /kpxvm/modprobe.log
if [ -n "$KPXVM_MODULES" ]; then
  modprobe -a $KPXVM_MODULES > /kpxvm/modprobe.log 2>&1 || mrc=$?
fi
read t0 _ < /proc/uptime
if [ "$mrc" = 0 ]; then
  cd /work && /bin/sh /kpxvm/script.sh > /kpxvm/stdout 2> /kpxvm/stderr < /dev/null
  rc=$?
else
  rc=255
  : > /kpxvm/stdout; : > /kpxvm/stderr
fi
read t1 _ < /proc/uptime
section() {
  echo "section $1 $(wc -c < "$2")"
  base64 "$2"
  echo "end"
}
{
  echo "KPXVM-BEGIN $KPXVM_NONCE"
  echo "exit $rc"
  echo "modprobe $mrc"
  echo "uptime $t0 $t1"
  section modprobe /kpxvm/modprobe.log
  section stdout /kpxvm/stdout
  section stderr /kpxvm/stderr
  for f in $KPXVM_COLLECT; do
    if [ -f "$f" ]; then section "file:$f" "$f"; else echo "missing $f"; fi
  done
  echo "KPXVM-END $KPXVM_NONCE"
} > /dev/ttyS1
# Closing ttyS1 waited for its output to drain; power off at once (no init to return to).
echo o > /proc/sysrq-trigger
sleep 60
`;
