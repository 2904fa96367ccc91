/**
 * An in-memory IPVS table behind the Ipvs interface, for unit tests. It keeps
 * ipvsadm -R's semantics that matter to kpx: each line applies on its own, a
 * refused line prints an error and the next lines still run; an unknown
 * scheduler is refused (as when its module is missing). Failures and
 * connection counts can be injected.
 */
import { type IPVSForward, realKey } from "../planner/mod.ts";
import type { Ipvs } from "./ipvsadm.ts";
import type { IPVSTable, KernelService } from "./ipvs_state.ts";

const FORWARD: Record<string, IPVSForward> = { "-m": "masq", "-g": "route", "-i": "tunnel" };

function parseAddr(text: string): { address: string; port: number } {
  const m = /^(?:\[([0-9a-f:.]+)\]|([0-9.]+)):(\d+)$/.exec(text);
  if (!m) throw new Error(`Illegal address ${text}`);
  return { address: (m[1] ?? m[2])!, port: Number(m[3]) };
}

export class FakeIpvs implements Ipvs {
  readonly table: IPVSTable = new Map();
  /** Schedulers whose modules "exist". */
  schedulers = new Set(["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh"]);
  /** The next restore applies only this many lines, then fails (as if the kernel refused one). */
  failAfterLines: number | undefined;
  /** Every restore's lines, for assertions. */
  readonly restores: string[][] = [];
  timeouts: [number, number, number] = [900, 120, 300];

  list(): Promise<IPVSTable> {
    return Promise.resolve(this.#copy());
  }

  listService(key: string): Promise<KernelService | null> {
    return Promise.resolve(this.#copy().get(key) ?? null);
  }

  /** Connection counts of one real server, as IPVS would count them. */
  setConnections(key: string, real: string, active: number, inactive: number): void {
    const r = this.table.get(key)?.reals.find((x) => realKey(x) === real);
    if (!r) throw new Error(`FakeIpvs: no real server ${real} in ${key}`);
    r.activeConns = active;
    r.inactiveConns = inactive;
  }

  restore(lines: readonly string[]): Promise<string[]> {
    this.restores.push([...lines]);
    const errors: string[] = [];
    let budget = this.failAfterLines;
    this.failAfterLines = undefined;
    for (const line of lines) {
      if (budget !== undefined && budget-- <= 0) {
        errors.push("injected failure: Cannot allocate memory");
        break;
      }
      try {
        this.#apply(line);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    return Promise.resolve(errors);
  }

  setTimeouts(tcp: number, tcpFin: number, udp: number): Promise<void> {
    const [a, b, c] = this.timeouts;
    this.timeouts = [tcp || a, tcpFin || b, udp || c];
    return Promise.resolve();
  }

  #copy(): IPVSTable {
    const out: IPVSTable = new Map();
    for (const k of [...this.table.keys()].sort()) {
      const s = this.table.get(k)!;
      out.set(k, {
        ...s,
        reals: s.reals.map((r) => ({ ...r })).sort((a, b) => (realKey(a) < realKey(b) ? -1 : 1)),
      });
    }
    return out;
  }

  #apply(line: string): void {
    const w = line.trim().split(/\s+/);
    const [verb, flag, addr] = w;
    const protocol = flag === "-t"
      ? "tcp"
      : flag === "-u"
      ? "udp"
      : flag === "--sctp-service"
      ? "sctp"
      : undefined;
    if (!verb || !protocol || !addr) throw new Error(`Illegal line: ${line}`);
    const key = `${flag} ${addr}`;
    const opt = (name: string) => {
      const i = w.indexOf(name);
      return i > 0 ? w[i + 1] : undefined;
    };
    const svc = this.table.get(key);
    if (verb === "-A" || verb === "-E") {
      const scheduler = opt("-s") ?? "wlc";
      if (!this.schedulers.has(scheduler)) {
        throw new Error("Scheduler or persistence engine not found");
      }
      if (verb === "-A" && svc) throw new Error("Service already exists");
      if (verb === "-E" && !svc) throw new Error("No such service");
      const persistence = w.includes("-p") ? Number(opt("-p") ?? 300) : 0;
      this.table.set(key, {
        protocol,
        ...parseAddr(addr),
        scheduler,
        persistence,
        reals: svc?.reals ?? [],
      });
      return;
    }
    if (!svc) throw new Error("No such service");
    if (verb === "-D") {
      this.table.delete(key);
      return;
    }
    const r = parseAddr(opt("-r") ?? "");
    const i = svc.reals.findIndex((x) => x.address === r.address && x.port === r.port);
    if (verb === "-d") {
      if (i < 0) throw new Error("No such destination");
      svc.reals.splice(i, 1);
      return;
    }
    const forward = FORWARD[w.find((x) => FORWARD[x]) ?? "-g"]!;
    const weight = Number(opt("-w") ?? 1);
    if (verb === "-a") {
      if (i >= 0) throw new Error("Destination already exists");
      svc.reals.push({ ...r, weight, forward, activeConns: 0, inactiveConns: 0 });
    } else if (verb === "-e") {
      if (i < 0) throw new Error("No such destination");
      svc.reals[i] = { ...svc.reals[i]!, weight, forward };
    } else {
      throw new Error(`Illegal verb: ${line}`);
    }
  }
}
