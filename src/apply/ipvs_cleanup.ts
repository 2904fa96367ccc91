/**
 * `kpx cleanup` for IPVS mode: the virtual services kpx owns and the
 * kube-ipvs0 interface. kube-proxy's cleanup flushes the whole IPVS table;
 * kpx removes only what ownsService() says is its own (on kube-ipvs0's
 * addresses, or a node port on one of the node's addresses), with no memory
 * and no configuration: excludeCIDRs is not known here, and what it protects
 * is not on kube-ipvs0 in the first place.
 */
import { serviceKey } from "../planner/mod.ts";
import type { DummyLink } from "./ipvs_link.ts";
import { ownsService } from "./ipvs_state.ts";
import type { Ipvs } from "./ipvsadm.ts";
import { CommandFailedError, runChecked, type Runner } from "./process.ts";
import { readSysctl } from "./sysctl.ts";

export interface IPVSCleanup {
  /** Virtual services deleted (keys). */
  services: string[];
  /** Whether kube-ipvs0 was deleted. */
  link: boolean;
  /** Lines ipvsadm refused. */
  errors: string[];
}

/** localAddresses: every address of the node (`ip -j address`), for node ports. */
export async function cleanupIPVS(
  ipvs: Ipvs,
  link: DummyLink,
  localAddresses: readonly string[],
): Promise<IPVSCleanup> {
  const bound = new Set(await link.addresses());
  const own = {
    boundAddresses: bound,
    nodeIPs: new Set(localAddresses),
    known: new Set<string>(),
    excludeCIDRs: [],
  };
  const services = [...(await ipvs.list()).values()].filter((s) => ownsService(s, own)).map(
    serviceKey,
  );
  const errors = await ipvs.restore(services.map((k) => `-D ${k}`));
  return { services, link: await link.remove(), errors };
}

/**
 * Whether the kernel has IPVS loaded, without loading it (ipvsadm would):
 * its sysctls exist only then. Read through sysctl(8) like kpx's other
 * sysctls; without sysctl(8) installed, IPVS mode could not have run
 * (it sets its sysctls with it), so there is nothing of it to clean up.
 */
export async function ipvsLoaded(runner: Runner): Promise<boolean> {
  try {
    return (await readSysctl(runner, "net.ipv4.vs.conntrack")) !== undefined;
  } catch (e) {
    if (e instanceof CommandFailedError && e.code === 127) return false;
    throw e;
  }
}

/** Every address of the node's interfaces (`ip -j address`). */
export async function localAddresses(runner: Runner): Promise<string[]> {
  const links = JSON.parse(
    new TextDecoder().decode(await runChecked(runner, ["ip", "-j", "address"])),
  ) as Array<
    { addr_info?: Array<{ local?: string }> }
  >;
  return links.flatMap((l) => l.addr_info ?? []).map((a) => a.local ?? "").filter((a) => a !== "");
}
