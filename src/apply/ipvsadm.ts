/**
 * kpx's window on IPVS: list the table, apply ipvsadm-restore lines, set the
 * timeouts. A real implementation runs ipvsadm; FakeIpvs (ipvs_fake.ts) is
 * the in-memory kernel of the unit tests.
 *
 * Measured in the test VM (Debian 6.1 under qemu TCG; bench/ipvs_bench.ts):
 * 100 new virtual services take 67 ms as one `ipvsadm -R` and 4.5 s as one
 * ipvsadm each (~45 ms per process); `ipvsadm -Ln` of 1.1k virtual services
 * with 10k real servers takes 0.8 s, of one service 0.05 s. So changes
 * always go through one `ipvsadm -R`, and a small sync reads back only the
 * virtual services it touched.
 */
import { type IPVSTable, type KernelService, parseIpvsList } from "./ipvs_state.ts";
import { CommandFailedError, runChecked, type Runner } from "./process.ts";

/** IPVS refused or failed part of a change. */
export class IpvsApplyError extends Error {
  override name = "IpvsApplyError";
}

export interface Ipvs {
  /** Every virtual service with its real servers and their connection counts. */
  list(): Promise<IPVSTable>;
  /** One virtual service (key: `-t 10.96.0.10:80`), or null if there is none. */
  listService(key: string): Promise<KernelService | null>;
  /**
   * Applies ipvsadm-restore lines in order. ipvsadm -R goes on past a line
   * the kernel refuses and still exits 0, so the error lines it printed are
   * returned, and callers read the table back to know what happened.
   */
  restore(lines: readonly string[]): Promise<string[]>;
  /** ipvsadm --set: TCP, TCP FIN and UDP timeouts in seconds; 0 leaves one as it is. */
  setTimeouts(tcp: number, tcpFin: number, udp: number): Promise<void>;
}

const NO_SERVICE = /no such service|service not defined|does not exist/i;

export class IpvsadmCli implements Ipvs {
  constructor(readonly runner: Runner) {}

  async list(): Promise<IPVSTable> {
    return parseIpvsList(
      new TextDecoder().decode(await runChecked(this.runner, ["ipvsadm", "-Ln"])),
    );
  }

  async listService(key: string): Promise<KernelService | null> {
    const argv = ["ipvsadm", "-Ln", ...key.split(" ")];
    const r = await this.runner.run(argv);
    if (r.code !== 0) {
      if (NO_SERVICE.test(r.stderr)) return null;
      throw new CommandFailedError(argv, r.code, r.stderr);
    }
    return parseIpvsList(new TextDecoder().decode(r.stdout)).get(key) ?? null;
  }

  async restore(lines: readonly string[]): Promise<string[]> {
    if (lines.length === 0) return [];
    const r = await this.runner.run(
      ["ipvsadm", "-R"],
      new TextEncoder().encode(lines.join("\n") + "\n"),
    );
    const errors = r.stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    if (r.code !== 0 && errors.length === 0) errors.push(`ipvsadm -R: exit status ${r.code}`);
    return errors;
  }

  async setTimeouts(tcp: number, tcpFin: number, udp: number): Promise<void> {
    await runChecked(this.runner, ["ipvsadm", "--set", String(tcp), String(tcpFin), String(udp)]);
  }
}
