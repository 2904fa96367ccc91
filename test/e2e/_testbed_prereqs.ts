/**
 * What the real-kernel tests need from the machine, checked up front so a missing piece reads
 * as one clear message instead of a failure deep inside a test.
 * @module
 */

import { describe, runCommand } from "./_testbed_exec.ts";
import { TESTBED_NAMESPACE_PREFIX } from "./_testbed_names.ts";

export interface KernelPrereqs {
  ok: boolean;
  /** One entry per missing piece, e.g. "nft: not found (Debian package nftables)". */
  missing: string[];
  /** Human-readable summary, empty when ok. */
  message: string;
}

const TOOLS: ReadonlyArray<{ argv: string[]; label: string; install: string }> = [
  { argv: ["ip", "-V"], label: "ip", install: "iproute2" },
  { argv: ["nft", "--version"], label: "nft", install: "nftables" },
  { argv: ["conntrack", "--version"], label: "conntrack", install: "conntrack" },
  { argv: ["sysctl", "--version"], label: "sysctl", install: "procps" },
];

async function toolMissing(argv: string[]): Promise<string | undefined> {
  try {
    const result = await runCommand(argv, { timeoutMs: 5_000 });
    return result.code === 0 ? undefined : (result.stderr.trim() || `exit code ${result.code}`);
  } catch (error) {
    return error instanceof Error && error.cause instanceof Deno.errors.NotFound
      ? "not found"
      : describe(error);
  }
}

/** Creates a scratch namespace with a bridge and a veth, then deletes it. */
async function netnsMissing(): Promise<string | undefined> {
  const ns = `${TESTBED_NAMESPACE_PREFIX}${Deno.pid}x-prereq`;
  const add = await runCommand(["ip", "netns", "add", ns]);
  if (add.code !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  const steps: [string, string[]][] = [
    ["create a bridge", ["ip", "-n", ns, "link", "add", "name", "br0", "type", "bridge"]],
    ["create a veth pair", [
      "ip",
      "-n",
      ns,
      "link",
      "add",
      "name",
      "va",
      "type",
      "veth",
      "peer",
      "name",
      "vb",
    ]],
    ["run nft in a namespace", ["ip", "netns", "exec", ns, "nft", "list", "ruleset"]],
  ];
  let problem: string | undefined;
  for (const [action, argv] of steps) {
    const result = await runCommand(argv);
    if (result.code !== 0) {
      problem = `cannot ${action}: ${result.stderr.trim()}`;
      break;
    }
  }
  const del = await runCommand(["ip", "netns", "delete", ns]);
  if (del.code !== 0) {
    throw new Error(`Cannot delete prerequisite-check namespace ${ns}: ${del.stderr.trim()}`);
  }
  return problem;
}

/** Checks root, ip/nft/conntrack/sysctl, and that namespaces with bridge and veth work. */
export async function requireKernelPrereqs(): Promise<KernelPrereqs> {
  const missing: string[] = [];
  if (Deno.uid() !== 0) missing.push(`root: running as uid ${Deno.uid()}`);
  for (const tool of TOOLS) {
    const problem = await toolMissing(tool.argv);
    if (problem !== undefined) {
      missing.push(`${tool.label}: ${problem} (Debian package ${tool.install})`);
    }
  }
  if (missing.length === 0) {
    const problem = await netnsMissing();
    if (problem !== undefined) missing.push(`network namespaces: ${problem}`);
  }
  const message = missing.length === 0 ? "" : `Kernel tests need: ${missing.join("; ")}`;
  return { ok: missing.length === 0, missing, message };
}

/**
 * For `Deno.test({ ignore })`: false when the prerequisites are met; otherwise throws when
 * CI=true (CI must run these tests) and returns true with a warning elsewhere.
 */
export async function shouldSkipKernelTests(): Promise<boolean> {
  const prereqs = await requireKernelPrereqs();
  if (prereqs.ok) return false;
  if (Deno.env.get("CI") === "true") {
    throw new Error(`Cannot run kernel tests in CI: ${prereqs.message}`);
  }
  console.warn(`Skipping kernel tests. ${prereqs.message}`);
  return true;
}
