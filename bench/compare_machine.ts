/** The machine and tool versions a comparison ran with (printed in the report). */
import { run } from "./_compare_exec.ts";
import type { MachineInfo } from "./compare_results.ts";

/** First line a tool prints for --version, or "not installed". */
async function version(argv: string[]): Promise<string> {
  try {
    const r = await run(argv);
    const text = (new TextDecoder().decode(r.stdout) + r.stderr).trim().split("\n")[0] ?? "";
    return r.code === 0 && text ? text : "not installed";
  } catch {
    return "not installed";
  }
}

export async function machineInfo(): Promise<MachineInfo> {
  const cpus = (await Deno.readTextFile("/proc/cpuinfo").catch(() => "")).split("\n")
    .filter((l) => l.startsWith("model name")).map((l) => l.split(":")[1]?.trim() ?? "");
  return {
    cpu: cpus[0] || "unknown CPU",
    cores: cpus.length || navigator.hardwareConcurrency,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    kernel: Deno.osRelease(),
    nft: await version(["nft", "--version"]),
    // --version only prints; it reads or changes no table.
    iptablesNft: await version(["iptables-nft", "--version"]),
    iptablesLegacy: await version(["iptables-legacy", "--version"]),
    deno: Deno.version.deno,
  };
}
