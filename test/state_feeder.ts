/** Keeps a ClusterState in step with a generator's objects, as a watch would. */
import {
  ClusterState,
  InvalidObjectError,
  parseEndpointSlice,
  parseService,
} from "../src/state/mod.ts";
import type { ClusterGenerator } from "./cluster_gen.ts";

export class StateFeeder {
  #seenServices = new Map<string, string>();
  #seenSlices = new Map<string, string>();
  warnings: string[] = [];

  constructor(readonly state: ClusterState) {}

  /** A new state for `node`, fed the generator's objects. */
  static fed(gen: ClusterGenerator, node = "node-a"): StateFeeder {
    const feeder = new StateFeeder(new ClusterState(node));
    feeder.sync(gen);
    return feeder;
  }

  #apply<T>(kind: "service" | "slice", id: string, obj: Record<string, unknown>) {
    try {
      if (kind === "service") {
        const r = parseService(obj);
        if (r.kind === "service") this.state.upsertService(r.spec);
        else this.state.deleteService(id);
      } else {
        const r = parseEndpointSlice(obj);
        if (r.kind === "slice") this.state.upsertSlice(r.spec);
        else this.state.deleteSlice(id);
      }
    } catch (e) {
      if (!(e instanceof InvalidObjectError)) throw e;
      // Like the daemon: an invalid update removes what was there before.
      if (kind === "service") this.state.deleteService(id);
      else this.state.deleteSlice(id);
      this.warnings.push(e.message);
    }
  }

  sync(gen: ClusterGenerator): void {
    const idOf = (o: Record<string, unknown>) => {
      const m = (o["metadata"] ?? {}) as Record<string, unknown>;
      return `${m["namespace"] ?? "default"}/${m["name"]}`;
    };
    const svcs = new Map([...gen.services.values()].map((o) => [idOf(o), o]));
    const slices = new Map([...gen.slices.values()].map((o) => [idOf(o), o]));
    for (const [id, o] of svcs) {
      const j = JSON.stringify(o);
      if (this.#seenServices.get(id) !== j) this.#apply("service", id, o);
      this.#seenServices.set(id, j);
    }
    for (const id of [...this.#seenServices.keys()]) {
      if (!svcs.has(id)) {
        this.state.deleteService(id);
        this.#seenServices.delete(id);
      }
    }
    for (const [id, o] of slices) {
      const j = JSON.stringify(o);
      if (this.#seenSlices.get(id) !== j) this.#apply("slice", id, o);
      this.#seenSlices.set(id, j);
    }
    for (const id of [...this.#seenSlices.keys()]) {
      if (!slices.has(id)) {
        this.state.deleteSlice(id);
        this.#seenSlices.delete(id);
      }
    }
  }
}
