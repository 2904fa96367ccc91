/**
 * Boots the IPVS test VM once to run one shell script, and reads its results back.
 *
 * Each run gets its own small cpio layer (the script, its files, run.env) appended to the
 * cached base initramfs: the kernel unpacks concatenated archives in order, so nothing has
 * to be shared with the host while the guest runs (no network device, no 9p).
 * Results come back over the second serial port, base64-encoded: about 0.5 MB/s of TCG
 * time, so a megabyte of output or collected files adds ~2 s to a run.
 *
 * @module
 */

import { CpioTree, guestPath } from "./_ipvs_vm_cpio.ts";
import { exists, findExecutable } from "./_ipvs_vm_host.ts";
import type { VmImage } from "./_ipvs_vm_image.ts";

/** A file handed to the guest with an explicit mode. */
export interface VmFile {
  readonly data: string | Uint8Array;
  /** Permission bits; default 0o644. */
  readonly mode?: number;
}

/** Options of {@linkcode runInVm}. */
export interface VmRunOptions {
  /**
   * Shell script, run by /bin/sh (dash) as root in /work with stdin from /dev/null. The
   * guest has Debian's ipvsadm, nft, ip/ss/tc, conntrack, socat, kmod, coreutils' env and
   * timeout, util-linux's nsenter/unshare, and busybox for the rest (awk, sed, grep...).
   */
  script: string;
  /** Files put in the guest before the script runs; relative paths are under /work. */
  files?: Record<string, string | Uint8Array | VmFile>;
  /** Wall-clock limit for boot + script + power-off; qemu is killed when it passes. */
  timeoutMs: number;
  /** Guest memory in MiB; default 1024. */
  memoryMb?: number;
  /** Modules loaded with `modprobe -a` before the script; default {@linkcode DEFAULT_VM_MODULES}.
   * Others load on demand (the kernel calls /sbin/modprobe). */
  modules?: readonly string[];
  /** Also put /usr/bin/deno in the guest (the image must be built with `deno: true`). */
  deno?: boolean;
  /** Guest paths of files whose content the run returns in {@linkcode VmRun.files}. */
  collect?: readonly string[];
  /** Extra kernel command line arguments. */
  kernelArgs?: readonly string[];
  /** Aborts the run (qemu is killed). */
  signal?: AbortSignal;
}

/** What a run produced. */
export interface VmRun {
  /** The script's stdout. */
  stdout: string;
  /** The script's stderr. */
  stderr: string;
  /** The script's exit status. */
  exitCode: number;
  /** Host wall-clock time from starting qemu to its exit, in milliseconds. */
  durationMs: number;
  /** Guest uptime when the script started (kernel boot + init + modprobe), in milliseconds. */
  bootMs: number;
  /** Guest time the script ran, in milliseconds. */
  scriptMs: number;
  /** Contents of the {@linkcode VmRunOptions.collect} files that existed, by guest path. */
  files: Record<string, Uint8Array>;
  /** The serial console (kernel messages at loglevel 3 and above), for diagnostics. */
  console: string;
}

/** Modules loaded before every script unless the run names its own list. */
export const DEFAULT_VM_MODULES: readonly string[] = [
  "ip_vs",
  "ip_vs_rr",
  "nf_conntrack",
  "nf_nat",
  "nf_tables",
  "veth",
  "dummy",
];

/** Every IPVS scheduler module of the 6.1 kernel, for runs that want them all preloaded. */
export const IPVS_SCHEDULER_MODULES: readonly string[] = [
  "rr",
  "wrr",
  "lc",
  "wlc",
  "lblc",
  "lblcr",
  "sh",
  "dh",
  "sed",
  "nq",
  "mh",
  "fo",
  "ovf",
].map((s) => `ip_vs_${s}`);

/** A run that did not produce a result: the VM failed to boot, timed out or was aborted. */
export class VmRunError extends Error {
  /** Last part of the serial console, to see where the guest stopped. */
  readonly consoleTail: string;
  constructor(message: string, consoleTail: string, options?: ErrorOptions) {
    super(`${message}\n--- console tail ---\n${consoleTail}`, options);
    this.name = "VmRunError";
    this.consoleTail = consoleTail;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CONSOLE_TAIL_CHARS = 4000;

/**
 * Boots the image, runs `options.script` inside, and returns its output and exit code.
 * A non-zero exit of the script is returned, not thrown; a VM that gives no result throws
 * {@linkcode VmRunError}.
 */
export async function runInVm(image: VmImage, options: VmRunOptions): Promise<VmRun> {
  if (!(options.timeoutMs > 0)) {
    throw new RangeError(`Cannot run in VM: timeoutMs must be positive, got ${options.timeoutMs}`);
  }
  if (options.deno === true && image.denoLayer === undefined) {
    throw new TypeError("Cannot run in VM with Deno: the image was built without deno: true");
  }
  const qemu = await findExecutable("qemu-system-x86_64");
  if (qemu === undefined) {
    throw new Error("Cannot run in VM: qemu-system-x86_64 is not installed (qemu-system-x86)");
  }
  const nonce = crypto.randomUUID();
  const tmp = await makeRunDir(image);
  try {
    const initrd = `${tmp}/initrd`;
    const runLayer = runLayerTree(options, nonce);
    await assembleInitrd(
      initrd,
      image,
      options.deno === true ? image.denoLayer : undefined,
      runLayer,
    );

    const consolePath = `${tmp}/console.log`;
    const resultPath = `${tmp}/result.log`;
    const args = await qemuArgs(image, {
      initrd,
      consolePath,
      resultPath,
      memoryMb: options.memoryMb ?? 1024,
      kernelArgs: options.kernelArgs ?? [],
    });
    const started = performance.now();
    const outcome = await runQemu(qemu, args, options.timeoutMs, options.signal);
    const durationMs = Math.round(performance.now() - started);
    const console = await readIfExists(consolePath);
    const tail = console.slice(-CONSOLE_TAIL_CHARS);
    if (outcome.kind === "timeout") {
      throw new VmRunError(`Cannot run in VM: no power-off within ${options.timeoutMs} ms`, tail);
    }
    if (outcome.kind === "aborted") {
      throw new VmRunError("Cannot run in VM: the run was aborted", tail, {
        cause: options.signal?.reason,
      });
    }
    const resultText = await readIfExists(resultPath);
    let result: ParsedResult;
    try {
      result = parseVmResult(resultText, nonce);
    } catch (error) {
      throw new VmRunError(
        `Cannot run in VM: qemu exited with code ${outcome.code} without a complete result` +
          (outcome.stderr === "" ? "" : ` (qemu: ${outcome.stderr.trim()})`),
        tail,
        { cause: error },
      );
    }
    if (result.modprobeStatus !== 0) {
      throw new VmRunError(
        `Cannot run in VM: modprobe of ${
          (options.modules ?? DEFAULT_VM_MODULES).join(" ")
        } failed with ${result.modprobeStatus}: ${decoder.decode(result.sections.get("modprobe"))}`,
        tail,
      );
    }
    const files: Record<string, Uint8Array> = {};
    for (const [name, bytes] of result.sections) {
      if (name.startsWith("file:")) files[name.slice("file:".length)] = bytes;
    }
    return {
      stdout: decoder.decode(result.sections.get("stdout")),
      stderr: decoder.decode(result.sections.get("stderr")),
      exitCode: result.exitCode,
      durationMs,
      bootMs: Math.round(result.uptimeStart * 1000),
      scriptMs: Math.round((result.uptimeEnd - result.uptimeStart) * 1000),
      files,
      console,
    };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The per-run cpio layer: run.env, the script, and the caller's files. */
function runLayerTree(options: VmRunOptions, nonce: string): CpioTree {
  const tree = new CpioTree();
  const modules = options.modules ?? DEFAULT_VM_MODULES;
  const collect = (options.collect ?? []).map((p) =>
    guestPath(p.startsWith("/") ? p : `/work/${p}`)
  );
  for (const word of [...modules, ...collect]) {
    // run.env is sourced by sh and the lists are split on blanks: keep them to plain words.
    if (!/^[A-Za-z0-9_./+-]+$/.test(word)) {
      throw new TypeError(`Cannot run in VM: "${word}" is not a plain module name or path`);
    }
  }
  const env = [
    `KPXVM_NONCE=${nonce}`,
    `KPXVM_MODULES='${modules.join(" ")}'`,
    `KPXVM_COLLECT='${collect.join(" ")}'`,
  ].join("\n") + "\n";
  tree.addFile("/kpxvm/run.env", { bytes: encoder.encode(env) });
  tree.addFile("/kpxvm/script.sh", { bytes: encoder.encode(options.script) }, 0o755);
  for (const [path, value] of Object.entries(options.files ?? {})) {
    const target = path.startsWith("/") ? path : `/work/${path}`;
    if (guestPath(target).startsWith("/kpxvm/")) {
      throw new TypeError(`Cannot put file "${path}" in the VM: /kpxvm is the harness's own`);
    }
    const file: VmFile = typeof value === "string" || value instanceof Uint8Array
      ? { data: value }
      : value;
    const bytes = typeof file.data === "string" ? encoder.encode(file.data) : file.data;
    tree.addFile(target, { bytes }, file.mode ?? 0o644);
  }
  return tree;
}

/**
 * Writes the run's initrd: base archive, optional Deno layer, then the run layer. Each part
 * is padded with zeros to 512 bytes: the kernel skips zeros between archives and needs an
 * uncompressed archive to start 4-byte aligned.
 */
async function assembleInitrd(
  path: string,
  image: VmImage,
  denoLayer: string | undefined,
  runLayer: CpioTree,
): Promise<void> {
  const out = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const writer = out.writable.getWriter();
    let offset = 0;
    const pad = async () => {
      const n = (512 - (offset % 512)) % 512;
      if (n > 0) await writer.write(new Uint8Array(n));
      offset += n;
    };
    for (const part of [image.initrd, ...(denoLayer === undefined ? [] : [denoLayer])]) {
      const file = await Deno.open(part, { read: true });
      for await (const chunk of file.readable) {
        await writer.write(chunk);
        offset += chunk.length;
      }
      await pad();
    }
    for await (const chunk of runLayer.stream()) {
      await writer.write(chunk);
      offset += chunk.length;
    }
    await writer.close();
  } catch (error) {
    throw new Error(`Cannot assemble the VM initrd "${path}"`, { cause: error });
  }
}

/** qboot starts faster than the default SeaBIOS (~0.1 s); shipped by qemu-system-data. */
const QBOOT_ROM = "/usr/share/qemu/qboot.rom";

/**
 * Kernel command line. Besides console and panic handling, it trims boot work that is
 * pointless in a throwaway test VM and slow under TCG (measured with initcall_debug):
 * CPU vulnerability mitigations, crypto self-tests, and three initcalls that only serve
 * key management and tracing (the KDF108 self-test alone takes 0.37 s).
 */
const KERNEL_ARGS = [
  "console=ttyS0", // first serial port: kernel messages
  "panic=-1", // reboot at once on panic; -no-reboot turns that into qemu exiting
  "loglevel=3",
  "rdinit=/init",
  "mitigations=off",
  "cryptomgr.notests=1",
  "initcall_blacklist=crypto_kdf108_init,init_encrypted,init_kprobe_trace",
  // kmod applies module options from the command line: no stray dummy0 when dummy loads.
  "dummy.numdummies=0",
];

async function qemuArgs(
  image: VmImage,
  o: {
    initrd: string;
    consolePath: string;
    resultPath: string;
    memoryMb: number;
    kernelArgs: readonly string[];
  },
): Promise<string[]> {
  const append = [...KERNEL_ARGS, ...o.kernelArgs].join(" ");
  const bios = (await exists(QBOOT_ROM)) ? ["-bios", QBOOT_ROM] : [];
  return [
    ...bios,
    // Software emulation: the host has no usable KVM (-enable-kvm hung here).
    "-accel",
    "tcg",
    // All CPU features TCG emulates (SSE4, RDRAND...): the Deno binary and the kernel's
    // random number generator start faster with them.
    "-cpu",
    "max",
    "-m",
    String(o.memoryMb),
    "-smp",
    "1",
    // No default devices: no network card (nothing reaches the host's network), no VGA, no disks.
    "-nodefaults",
    "-no-user-config",
    "-nic",
    "none",
    "-display",
    "none",
    "-no-reboot",
    "-kernel",
    image.kernel,
    "-initrd",
    o.initrd,
    "-append",
    append,
    // ttyS0: console; ttyS1: results, written only by /init.
    "-serial",
    `file:${o.consolePath}`,
    "-serial",
    `file:${o.resultPath}`,
  ];
}

type QemuOutcome =
  | { kind: "exited"; code: number; stderr: string }
  | { kind: "timeout" }
  | { kind: "aborted" };

/** Milliseconds between asking qemu to stop (SIGTERM) and killing it. */
const KILL_GRACE_MS = 5_000;

/**
 * Runs qemu to its exit, stopping it on timeout or abort. qemu runs under coreutils'
 * `timeout -s KILL`, set a little past `timeoutMs`: should this process die without
 * stopping it (test runner killed), the VM still cannot outlive its budget. Stopping sends
 * SIGTERM to `timeout`, which passes it on to qemu; SIGKILL follows if that is ignored.
 */
async function runQemu(
  qemu: string,
  args: string[],
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<QemuOutcome> {
  if (signal?.aborted === true) return { kind: "aborted" };
  const timeoutTool = await findExecutable("timeout");
  const backstopSeconds = String(Math.ceil((timeoutMs + KILL_GRACE_MS) / 1000) + 1);
  const [cmd, cmdArgs] = timeoutTool === undefined
    ? [qemu, args]
    : [timeoutTool, ["-s", "KILL", backstopSeconds, qemu, ...args]];
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stopped: "timeout" | "aborted" | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const sendSignal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch (error) {
      // Deno throws TypeError when the process has exited meanwhile: nothing to stop.
      if (!(error instanceof TypeError)) throw error;
    }
  };
  const stop = (why: "timeout" | "aborted") => {
    if (stopped !== undefined) return;
    stopped = why;
    sendSignal("SIGTERM");
    killTimer = setTimeout(() => sendSignal("SIGKILL"), KILL_GRACE_MS);
  };
  const timer = setTimeout(() => stop("timeout"), timeoutMs);
  const onAbort = () => stop("aborted");
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const out = await child.output();
    if (stopped !== undefined) return { kind: stopped };
    return { kind: "exited", code: out.code, stderr: decoder.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    clearTimeout(killTimer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * A fresh directory for one run's initrd and serial logs, in `<cache>/runs/`: named after
 * this process, so directories left by a process that was killed (no `finally` ran) are
 * recognised and removed by the next run, and nothing is left outside the managed cache.
 */
async function makeRunDir(image: VmImage): Promise<string> {
  const runs = `${image.dir.slice(0, image.dir.lastIndexOf("/"))}/runs`;
  await Deno.mkdir(runs, { recursive: true });
  for await (const entry of Deno.readDir(runs)) {
    const pid = /^run-(\d+)-/.exec(entry.name)?.[1];
    if (pid === undefined || Number(pid) === Deno.pid) continue;
    if (await exists(`/proc/${pid}`)) continue;
    try {
      await Deno.remove(`${runs}/${entry.name}`, { recursive: true });
    } catch (error) {
      // Another process's run may be removing the same leftover at the same moment.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return await Deno.makeTempDir({ dir: runs, prefix: `run-${Deno.pid}-` });
}

async function readIfExists(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

/** The result frame /init writes to ttyS1, decoded. */
export interface ParsedResult {
  readonly exitCode: number;
  readonly modprobeStatus: number;
  readonly uptimeStart: number;
  readonly uptimeEnd: number;
  /** Section name ("stdout", "stderr", "modprobe", "file:<path>") → bytes. */
  readonly sections: Map<string, Uint8Array>;
}

/**
 * Parses the result frame: `KPXVM-BEGIN <nonce>`, `exit N`, `modprobe N`, `uptime A B`,
 * sections (`section <name> <bytes>`, base64 lines, `end`), `KPXVM-END <nonce>`.
 * Carriage returns (the tty's output processing) and lines outside the frame are ignored;
 * a missing end marker or a section whose size does not match is an error.
 */
export function parseVmResult(text: string, nonce: string): ParsedResult {
  const lines = text.replaceAll("\r", "").split("\n");
  const begin = lines.indexOf(`KPXVM-BEGIN ${nonce}`);
  const end = lines.indexOf(`KPXVM-END ${nonce}`);
  if (begin < 0) throw new SyntaxError("Cannot parse the VM result: no begin marker");
  if (end < begin) throw new SyntaxError("Cannot parse the VM result: no end marker (truncated)");
  let exitCode: number | undefined;
  let modprobeStatus: number | undefined;
  let uptime: [number, number] | undefined;
  const sections = new Map<string, Uint8Array>();
  for (let i = begin + 1; i < end; i++) {
    const line = lines[i] ?? "";
    const words = line.split(" ");
    if (words[0] === "exit") exitCode = parseIntStrict(words[1], line);
    else if (words[0] === "modprobe") modprobeStatus = parseIntStrict(words[1], line);
    else if (words[0] === "uptime") {
      uptime = [parseFloatStrict(words[1], line), parseFloatStrict(words[2], line)];
    } else if (words[0] === "section") {
      const size = parseIntStrict(words.at(-1), line);
      const name = words.slice(1, -1).join(" ");
      let b64 = "";
      for (i++; i < end && lines[i] !== "end"; i++) b64 += lines[i];
      const bytes = decodeBase64(b64, name);
      if (bytes.length !== size) {
        throw new SyntaxError(
          `Cannot parse the VM result: section "${name}" has ${bytes.length} bytes, expected ${size}`,
        );
      }
      sections.set(name, bytes);
    } else if (words[0] === "missing" || line === "") {
      continue; // a collect path that did not exist is simply absent from files
    } else {
      throw new SyntaxError(`Cannot parse the VM result: unexpected line "${line}"`);
    }
  }
  if (exitCode === undefined || modprobeStatus === undefined || uptime === undefined) {
    throw new SyntaxError("Cannot parse the VM result: exit, modprobe or uptime line missing");
  }
  return {
    exitCode,
    modprobeStatus,
    uptimeStart: uptime[0],
    uptimeEnd: uptime[1],
    sections,
  };
}

function parseIntStrict(word: string | undefined, line: string): number {
  if (word === undefined || !/^\d+$/.test(word)) {
    throw new SyntaxError(`Cannot parse the VM result: bad number in "${line}"`);
  }
  return Number(word);
}

function parseFloatStrict(word: string | undefined, line: string): number {
  if (word === undefined || !/^\d+(\.\d+)?$/.test(word)) {
    throw new SyntaxError(`Cannot parse the VM result: bad number in "${line}"`);
  }
  return Number(word);
}

function decodeBase64(b64: string, name: string): Uint8Array {
  try {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch (error) {
    throw new SyntaxError(`Cannot parse the VM result: section "${name}" is not base64`, {
      cause: error,
    });
  }
}
