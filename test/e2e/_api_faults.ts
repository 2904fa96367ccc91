/**
 * Faults a test can inject into the API server's answers: failures (the next
 * N requests, or all matching ones), latency, and hung watches. Latency
 * applies to every request; failures only to authenticated ones, so a stray
 * unauthenticated probe does not use one up.
 * @module
 */

/** What a fault sees of a request. */
export interface RequestInfo {
  method: string;
  path: string;
  params: URLSearchParams;
  watch: boolean;
}

/**
 * Which requests a fault applies to: a path prefix, a RegExp tested against
 * the path, or a predicate.
 */
export type RequestMatch = string | RegExp | ((req: RequestInfo) => boolean);

/** A fault in force until removed (also with `using`). */
export interface FaultHandle extends Disposable {
  remove(): void;
}

/** Whether `match` (absent: everything) applies to `req`. */
export function requestMatches(match: RequestMatch | undefined, req: RequestInfo): boolean {
  if (match === undefined) return true;
  if (typeof match === "string") return req.path.startsWith(match);
  if (match instanceof RegExp) return match.test(req.path);
  return match(req);
}

interface Rule {
  match: RequestMatch | undefined;
  /** How many more requests it applies to; Infinity until removed. */
  remaining: number;
}

interface FailureRule extends Rule {
  status: number;
}

interface LatencyRule extends Rule {
  ms: number;
}

/** The faults in force; the server asks it about each request. */
export class FaultPlan {
  #failures: FailureRule[] = [];
  #latencies: LatencyRule[] = [];
  #hangs: Rule[] = [];

  /** The next `count` requests (matching `match`, if given) fail with `status` (default 500). */
  failNext(count: number, options: { status?: number; match?: RequestMatch } = {}): void {
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`Cannot fail the next ${count} requests: need a positive integer`);
    }
    this.#failures.push({ match: options.match, remaining: count, status: options.status ?? 500 });
  }

  /** Every request matching `match` fails with `status` (default 500) until removed. */
  failMatching(match: RequestMatch, options: { status?: number } = {}): FaultHandle {
    return this.#add(this.#failures, {
      match,
      remaining: Infinity,
      status: options.status ?? 500,
    });
  }

  /** Delays the answer to every request (matching `match`) by `ms` until removed. */
  delay(ms: number, match?: RequestMatch): FaultHandle {
    if (!(ms >= 0)) throw new RangeError(`Cannot add a latency of ${ms} ms`);
    return this.#add(this.#latencies, { match, remaining: Infinity, ms });
  }

  /** New watches (matching `match`) start hung until removed. */
  hangNewWatches(match?: RequestMatch): FaultHandle {
    return this.#add(this.#hangs, { match, remaining: Infinity });
  }

  /** Removes every fault. */
  clear(): void {
    this.#failures = [];
    this.#latencies = [];
    this.#hangs = [];
  }

  /** @internal The status to fail this request with, using up a failNext. */
  failureFor(req: RequestInfo): number | undefined {
    const rule = this.#failures.find((r) => r.remaining > 0 && requestMatches(r.match, req));
    if (!rule) return undefined;
    rule.remaining--;
    return rule.status;
  }

  /** @internal The total latency to add to this request. */
  latencyFor(req: RequestInfo): number {
    return this.#latencies.filter((r) => requestMatches(r.match, req)).reduce(
      (t, r) => t + r.ms,
      0,
    );
  }

  /** @internal Whether this new watch starts hung. */
  hangs(req: RequestInfo): boolean {
    return this.#hangs.some((r) => requestMatches(r.match, req));
  }

  #add<R extends Rule>(list: R[], rule: R): FaultHandle {
    list.push(rule);
    const remove = (): void => {
      rule.remaining = 0;
      const i = list.indexOf(rule);
      if (i >= 0) list.splice(i, 1);
    };
    return { remove, [Symbol.dispose]: remove };
  }
}
