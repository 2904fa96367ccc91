/**
 * Runs shell scripts inside Debian's own kernel under qemu (software emulation), for the
 * tests that need what the host kernel lacks: IPVS and SCTP sockets.
 *
 * ```ts
 * const image = await ensureVmImage();           // cached after the first build
 * const run = await runInVm(image, {
 *   script: "ipvsadm -A -t 10.96.0.10:80 -s rr && ipvsadm -Ln",
 *   timeoutMs: 60_000,
 * });
 * ```
 *
 * The guest has no network device: traffic tests build network namespaces inside it.
 * See test/e2e/ipvs_vm_test.ts for IPVS NAT, SCTP, `nft -j -f` and Deno-in-guest examples.
 *
 * Environment: KPX_VM_CACHE (cache dir, default `<repo>/.cache/ipvs-vm`),
 * KPX_VM_KERNEL_PACKAGE (pin linux-image-6.1.0-<N>-amd64), KPX_VM_DENO (guest Deno binary).
 * Measured here: cold build ~6 s (+~1.5 s for the Deno layer), cached lookup ~0.5 s (one
 * apt-cache call), boot + trivial script ~2.1 s, ~2.4 s with the Deno layer.
 *
 * @module
 */

import { findExecutable, runCommand } from "./_ipvs_vm_host.ts";
import {
  BUILD_TOOLS,
  defaultCacheDir,
  defaultDenoBinary,
  GUEST_TOOLS,
  newestCachedImage,
  newestKernelPackage,
} from "./_ipvs_vm_image.ts";

export { defaultCacheDir, ensureVmImage } from "./_ipvs_vm_image.ts";
export type { VmImage, VmImageOptions } from "./_ipvs_vm_image.ts";
export {
  DEFAULT_VM_MODULES,
  IPVS_SCHEDULER_MODULES,
  parseVmResult,
  runInVm,
  VmRunError,
} from "./_ipvs_vm_run.ts";
export type { VmFile, VmRun, VmRunOptions } from "./_ipvs_vm_run.ts";

/** Options of {@linkcode vmPrerequisites}. */
export interface VmPrerequisiteOptions {
  /** Also check that a Deno binary for the guest is available. */
  deno?: boolean;
  /** Cache directory to look for an already built image; default as ensureVmImage. */
  cacheDir?: string;
}

/**
 * What is missing on this host to build and boot the VM, one human-readable line each
 * (naming the Debian package to install); empty when everything is there. Apt access is
 * only required when the cache holds no image yet.
 */
export async function vmPrerequisites(options: VmPrerequisiteOptions = {}): Promise<string[]> {
  const missing: string[] = [];
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    missing.push(`an x86_64 Linux host (this is ${Deno.build.os}/${Deno.build.arch})`);
    return missing;
  }
  const tools = [
    { name: "qemu-system-x86_64", debianPackage: "qemu-system-x86" },
    ...GUEST_TOOLS,
    ...BUILD_TOOLS,
  ];
  for (const tool of tools) {
    if ((await findExecutable(tool.name)) === undefined) {
      missing.push(`${tool.name} (install Debian package ${tool.debianPackage})`);
    }
  }
  if ((await newestCachedImage(options.cacheDir ?? defaultCacheDir(), undefined)) === undefined) {
    if (!missing.some((m) => m.startsWith("apt-cache "))) {
      try {
        if ((await newestKernelPackage()) === undefined) {
          missing.push("a linux-image-6.1.0-<N>-amd64 package known to apt (run apt-get update)");
        }
      } catch (error) {
        missing.push(`apt access (${error instanceof Error ? error.message : String(error)})`);
      }
    }
  }
  const socat = await findExecutable("socat");
  if (socat !== undefined) {
    // Debian's socat is built with SCTP; a self-built one may not be.
    const version = await runCommand(socat, ["-V"]);
    if (!/#define WITH_SCTP 1/.test(version.stdout)) missing.push("socat built with SCTP support");
  }
  if (options.deno === true) {
    try {
      await Deno.stat(defaultDenoBinary());
    } catch (error) {
      missing.push(
        `a Deno binary for the guest (set KPX_VM_DENO): ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
  }
  return missing;
}
