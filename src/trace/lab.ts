/**
 * The throwaway namespaces of one trace (see topology.ts): created, wired, and deleted again
 * by close() or `await using`, also when creating them fails half-way.
 * @module
 */

import { describe, ipBatch, runChecked, setSysctls } from "./exec.ts";
import { claimNamespacePrefix, deleteNetns, reapStaleNamespaces } from "./netns.ts";
import { planTopology, type Topology, type TopologyInput } from "./topology.ts";

/** `kpxr<pid>x<n>-<role>`: distinct from the test testbed's `kpxt…` and others' prefixes. */
export const TRACE_NAMESPACE_BASE = "kpxr";

export class TraceLab implements AsyncDisposable {
  readonly topology: Topology;
  /** Namespaces created and not yet deleted. */
  #namespaces: string[] = [];
  #closed = false;

  private constructor(topology: Topology) {
    this.topology = topology;
  }

  /** Every namespace created and not yet deleted. */
  get namespaces(): readonly string[] {
    return [...this.#namespaces];
  }

  static async create(input: Omit<TopologyInput, "prefix">): Promise<TraceLab> {
    // Leftovers of traces that were SIGKILLed (nothing else escapes cleanup) go first.
    await reapStaleNamespaces(TRACE_NAMESPACE_BASE);
    const prefix = await claimNamespacePrefix(TRACE_NAMESPACE_BASE, "node");
    const lab = new TraceLab(planTopology({ ...input, prefix }));
    lab.#namespaces.push(lab.topology.node); // Created by the claim.
    try {
      await lab.#build();
    } catch (error) {
      let closeProblem = "";
      try {
        await lab.close();
      } catch (closeError) {
        closeProblem = `; cleanup also failed: ${describe(closeError)}`;
      }
      throw new Error(
        `Cannot build trace namespaces ${prefix}-*: ${describe(error)}${closeProblem}`,
        {
          cause: error,
        },
      );
    }
    return lab;
  }

  async #build(): Promise<void> {
    const t = this.topology;
    const others = [t.outside, ...(t.pod === undefined ? [] : [t.pod])];
    for (const ns of others) {
      await runChecked(`create network namespace ${ns}`, ["ip", "netns", "add", ns]);
      this.#namespaces.push(ns);
    }
    await Promise.all([...t.sysctls].map(([ns, values]) => setSysctls(ns, values)));
    const [first, ...rest] = t.batches;
    // The node's batch creates the veth pairs the other batches configure.
    if (first !== undefined) await ipBatch(first.what, first.ns, first.lines);
    await Promise.all(rest.map((b) => ipBatch(b.what, b.ns, b.lines)));
  }

  /** Deletes every namespace (killing what runs inside). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const namespaces = [...this.#namespaces].reverse();
    const outcomes = await Promise.allSettled(namespaces.map((ns) => deleteNetns(ns)));
    const problems: string[] = [];
    outcomes.forEach((outcome, i) => {
      if (outcome.status === "rejected") problems.push(describe(outcome.reason));
      else this.#namespaces = this.#namespaces.filter((ns) => ns !== namespaces[i]);
    });
    if (problems.length > 0) {
      throw new Error(`Cannot delete trace namespaces: ${problems.join("; ")}`);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
