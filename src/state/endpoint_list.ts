/**
 * The endpoints of one EndpointSlice, held as columns: addresses, node names
 * and conditions in three arrays, hints only where an endpoint has any.
 * Endpoints are most of what kpx keeps (100k at 10k services); as one object
 * each they took ~90 bytes apiece beyond their address, as columns ~24.
 */
import type { Endpoint, EndpointSpec } from "./types.ts";

const READY = 1;
const SERVING = 2;
const TERMINATING = 4;

/** Shared by every endpoint without hints (most of them). */
const NO_HINTS: readonly string[] = Object.freeze([]);

export class EndpointList {
  readonly #addresses: string[];
  readonly #nodeNames: string[];
  /** READY | SERVING | TERMINATING, per endpoint. */
  readonly #conditions: number[];
  /** [zoneHints, nodeHints] of the endpoints that have hints, by index. */
  readonly #hints: Map<number, [readonly string[], readonly string[]]> | null;

  constructor(endpoints: readonly EndpointSpec[]) {
    const n = endpoints.length;
    // Exact sizes: arrays grown by push keep up to half again as spare.
    this.#addresses = new Array<string>(n);
    this.#nodeNames = new Array<string>(n);
    this.#conditions = new Array<number>(n);
    let hints: Map<number, [readonly string[], readonly string[]]> | null = null;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      this.#addresses[i] = e.address;
      this.#nodeNames[i] = e.nodeName;
      this.#conditions[i] = (e.ready ? READY : 0) | (e.serving ? SERVING : 0) |
        (e.terminating ? TERMINATING : 0);
      if (e.zoneHints.length > 0 || e.nodeHints.length > 0) {
        hints ??= new Map();
        hints.set(i, [e.zoneHints, e.nodeHints]);
      }
    }
    this.#hints = hints;
  }

  get length(): number {
    return this.#addresses.length;
  }

  /** The endpoint at `i`, as an object (made on each call). */
  at(i: number): EndpointSpec {
    const { port: _port, ...spec } = this.endpoint(i, 0);
    return spec;
  }

  /** The endpoint at `i` serving `port`: what a joined service holds. */
  endpoint(i: number, port: number): Endpoint {
    const c = this.#conditions[i]!;
    const hints = this.#hints?.get(i);
    return {
      address: this.#addresses[i]!,
      port,
      ready: (c & READY) !== 0,
      serving: (c & SERVING) !== 0,
      terminating: (c & TERMINATING) !== 0,
      nodeName: this.#nodeNames[i]!,
      zoneHints: (hints?.[0] ?? NO_HINTS) as string[],
      nodeHints: (hints?.[1] ?? NO_HINTS) as string[],
    };
  }

  address(i: number): string {
    return this.#addresses[i]!;
  }

  nodeName(i: number): string {
    return this.#nodeNames[i]!;
  }

  *[Symbol.iterator](): Generator<EndpointSpec> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }
}
