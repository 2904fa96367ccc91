/**
 * kube-ipvs0: the dummy interface that holds every service address in IPVS
 * mode, so the kernel takes traffic to them as local and IPVS sees it in
 * LOCAL_IN. The name is kube-proxy's: a node switching from kube-proxy's IPVS
 * mode keeps its interface and kpx takes it over.
 *
 * The interface stays down, as kube-proxy leaves it: the local routes of its
 * addresses exist anyway (checked in the test VM, IPv4 and IPv6). With the
 * kernel's default arp_ignore=0 the node's other interfaces still answer ARP
 * for these addresses; ipvs.strictARP is the setting against that.
 */
import { runChecked, type Runner } from "./process.ts";

export const IPVS_INTERFACE = "kube-ipvs0";

export interface DummyLink {
  /** Creates the interface if it is missing; true if it was created. */
  ensure(): Promise<boolean>;
  /** Its addresses (without prefix lengths); [] if the interface does not exist. */
  addresses(): Promise<string[]>;
  /** Adds and removes addresses; returns the error lines (the rest still applies). */
  change(add: readonly string[], remove: readonly string[]): Promise<string[]>;
  /** Deletes the interface (and with it its addresses); false if there was none. */
  remove(): Promise<boolean>;
}

function prefixed(a: string): string {
  return a.includes(":") ? `${a}/128` : `${a}/32`;
}

/** The lines of `ip -batch` that add and remove the addresses (pure). */
export function addressBatch(
  dev: string,
  add: readonly string[],
  remove: readonly string[],
): string[] {
  return [
    // nodad: an IPv6 address would otherwise stay "tentative" for duplicate
    // address detection, which a down dummy never completes.
    ...add.map((a) => `address add ${prefixed(a)} dev ${dev}${a.includes(":") ? " nodad" : ""}`),
    ...remove.map((a) => `address del ${prefixed(a)} dev ${dev}`),
  ];
}

export class IpLink implements DummyLink {
  constructor(readonly runner: Runner, readonly name: string = IPVS_INTERFACE) {}

  async #exists(): Promise<boolean> {
    const r = await this.runner.run(["ip", "link", "show", "dev", this.name]);
    return r.code === 0;
  }

  async ensure(): Promise<boolean> {
    if (await this.#exists()) return false;
    await runChecked(this.runner, ["ip", "link", "add", this.name, "type", "dummy"]);
    return true;
  }

  async addresses(): Promise<string[]> {
    const r = await this.runner.run(["ip", "-j", "address", "show", "dev", this.name]);
    if (r.code !== 0) {
      if (!(await this.#exists())) return [];
      throw new Error(`Cannot list the addresses of ${this.name}: ${r.stderr.trim()}`);
    }
    const links = JSON.parse(new TextDecoder().decode(r.stdout)) as Array<
      { addr_info?: Array<{ local?: string }> }
    >;
    return links.flatMap((l) => l.addr_info ?? []).map((a) => a.local ?? "").filter((a) => a !== "")
      .sort();
  }

  async change(add: readonly string[], remove: readonly string[]): Promise<string[]> {
    const lines = addressBatch(this.name, add, remove);
    if (lines.length === 0) return [];
    // -force: go on past a failing line (an address already there or already
    // gone); what happened is read back by the caller.
    const r = await this.runner.run(
      ["ip", "-force", "-batch", "-"],
      new TextEncoder().encode(lines.join("\n") + "\n"),
    );
    const errors = r.stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    if (r.code !== 0 && errors.length === 0) errors.push(`ip -batch: exit status ${r.code}`);
    return errors;
  }

  async remove(): Promise<boolean> {
    if (!(await this.#exists())) return false;
    await runChecked(this.runner, ["ip", "link", "del", this.name]);
    return true;
  }
}

/** The interface in memory, for unit tests. */
export class FakeLink implements DummyLink {
  exists = false;
  readonly addrs = new Set<string>();
  /** The next change fails after applying this many of its lines. */
  failAfterLines: number | undefined;

  ensure(): Promise<boolean> {
    const created = !this.exists;
    this.exists = true;
    return Promise.resolve(created);
  }

  addresses(): Promise<string[]> {
    return Promise.resolve([...this.addrs].sort());
  }

  change(add: readonly string[], remove: readonly string[]): Promise<string[]> {
    let budget = this.failAfterLines;
    this.failAfterLines = undefined;
    const errors: string[] = [];
    for (
      const [a, adding] of [
        ...add.map((a) => [a, true] as const),
        ...remove.map((a) => [a, false] as const),
      ]
    ) {
      if (budget !== undefined && budget-- <= 0) {
        errors.push("injected failure");
        break;
      }
      if (!this.exists) errors.push(`Cannot find device "${IPVS_INTERFACE}"`);
      else if (adding && this.addrs.has(a)) errors.push("RTNETLINK answers: File exists");
      else if (!adding && !this.addrs.has(a)) {
        errors.push("RTNETLINK answers: Cannot assign requested address");
      } else if (adding) this.addrs.add(a);
      else this.addrs.delete(a);
    }
    return Promise.resolve(errors);
  }

  remove(): Promise<boolean> {
    const had = this.exists;
    this.exists = false;
    this.addrs.clear();
    return Promise.resolve(had);
  }
}
