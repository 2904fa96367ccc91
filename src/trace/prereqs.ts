/**
 * What `kpx trace` and the real-kernel tests need from the machine, checked up front so a
 * missing piece reads as one clear message instead of a failure deep inside a run.
 * @module
 */

import { describe, runCommand } from "./exec.ts";

export interface KernelPrereqs {
  ok: boolean;
  /** One entry per missing piece, e.g. "nft: not found (Debian package nftables)". */
  missing: string[];
  /** Human-readable summary, empty when ok. */
  message: string;
}

export interface KernelPrereqsOptions {
  /** Name of the scratch namespace the namespace check creates and deletes. */
  scratchNamespace?: string;
  /** Also create a scratch namespace with a bridge and a veth (default true). */
  checkNamespaces?: boolean;
  /** Start of the summary message (default "Kernel tests need"). */
  purpose?: string;
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

/**
 * The user id, or undefined where Deno may not tell (kpx's shipped permissions do not include
 * --allow-sys=uid): creating the first namespace then reports a missing privilege itself.
 */
function currentUid(): number | undefined {
  try {
    return Deno.uid() ?? undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return undefined;
    }
    throw error;
  }
}

/** Creates a scratch namespace with a bridge and a veth, then deletes it. */
async function netnsMissing(ns: string): Promise<string | undefined> {
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

/** Checks root, ip/nft/conntrack/sysctl, and (optionally) that namespaces with bridge and veth work. */
export async function requireKernelPrereqs(
  options: KernelPrereqsOptions = {},
): Promise<KernelPrereqs> {
  const missing: string[] = [];
  const uid = currentUid();
  if (uid !== undefined && uid !== 0) missing.push(`root: running as uid ${uid}`);
  const problems = await Promise.all(TOOLS.map((tool) => toolMissing(tool.argv)));
  TOOLS.forEach((tool, i) => {
    const problem = problems[i];
    if (problem !== undefined) {
      missing.push(`${tool.label}: ${problem} (Debian package ${tool.install})`);
    }
  });
  if (missing.length === 0 && (options.checkNamespaces ?? true)) {
    const problem = await netnsMissing(options.scratchNamespace ?? `kpxr${Deno.pid}x-prereq`);
    if (problem !== undefined) missing.push(`network namespaces: ${problem}`);
  }
  const purpose = options.purpose ?? "Kernel tests need";
  const message = missing.length === 0 ? "" : `${purpose}: ${missing.join("; ")}`;
  return { ok: missing.length === 0, missing, message };
}

/**
 * For `Deno.test({ ignore })`: false when the prerequisites are met; otherwise throws when
 * CI=true (CI must run these tests) and returns true with a warning elsewhere.
 */
export async function shouldSkipKernelTests(options: KernelPrereqsOptions = {}): Promise<boolean> {
  const prereqs = await requireKernelPrereqs(options);
  if (prereqs.ok) return false;
  if (Deno.env.get("CI") === "true") {
    throw new Error(`Cannot run kernel tests in CI: ${prereqs.message}`);
  }
  console.warn(`Skipping kernel tests. ${prereqs.message}`);
  return true;
}
