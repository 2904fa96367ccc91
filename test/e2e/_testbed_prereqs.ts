/**
 * What the real-kernel tests need from the machine (the check lives in src/trace/prereqs.ts,
 * shared with `kpx trace`); the testbed's scratch namespace carries the testbed's prefix.
 * @module
 */

import {
  type KernelPrereqs,
  requireKernelPrereqs as requirePrereqs,
  shouldSkipKernelTests as shouldSkip,
} from "../../src/trace/mod.ts";
import { TESTBED_NAMESPACE_PREFIX } from "./_testbed_names.ts";

export type { KernelPrereqs };

const SCRATCH = { scratchNamespace: `${TESTBED_NAMESPACE_PREFIX}${Deno.pid}x-prereq` };

/** Checks root, ip/nft/conntrack/sysctl, and that namespaces with bridge and veth work. */
export function requireKernelPrereqs(): Promise<KernelPrereqs> {
  return requirePrereqs(SCRATCH);
}

/**
 * For `Deno.test({ ignore })`: false when the prerequisites are met; otherwise throws when
 * CI=true (CI must run these tests) and returns true with a warning elsewhere.
 */
export function shouldSkipKernelTests(): Promise<boolean> {
  return shouldSkip(SCRATCH);
}
