/**
 * Objects from a source (API watch or manifest directory) into the cluster
 * state. Each invalid object is logged once per version, counted, and
 * skipped; the last valid version of it stays programmed, so a bad edit does
 * not take a working service down. Changes not yet programmed are kept per
 * service: when kpx received them (kpx_change_to_kernel_seconds), when the
 * EndpointSlice controller says they happened (network programming latency),
 * and how many Service and EndpointSlice changes are pending (kube-proxy's
 * *_changes_pending gauges).
 */
import type { Logger } from "../log/mod.ts";
import type { KpxMetrics } from "../metrics/mod.ts";
import {
  type ClusterState,
  InvalidObjectError,
  type NodeSpec,
  parseEndpointSlice,
  parseNode,
  parseService,
  SERVICE_NAME_LABEL,
} from "../state/mod.ts";

export type ObjectKind = "Service" | "EndpointSlice" | "Node";
export type EventType = "upsert" | "delete";

/** EndpointSlice controller annotation: when the change that caused this slice update happened. */
const TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time";

function meta(o: Record<string, unknown>): Record<string, unknown> {
  return (o["metadata"] ?? {}) as Record<string, unknown>;
}

function idOf(o: Record<string, unknown>): string {
  const m = meta(o);
  return `${m["namespace"] ?? "default"}/${m["name"] ?? ""}`;
}

export interface PendingChange {
  /** When kpx received the first not-yet-synced change. */
  receivedAt: number;
  /**
   * The oldest last-change-trigger-time of the service's pending EndpointSlice
   * changes. Absent when none carried it (then, as kube-proxy, no network
   * programming latency is observed), or after a slice of the service was
   * deleted (kube-proxy drops the trigger times then too).
   */
  triggeredAt?: number;
  /** The Service object itself changed. */
  serviceChanged: boolean;
  /** EndpointSlice changes for this service (each accepted event counts). */
  endpointChanges: number;
}

type Cause =
  | { kind: "service" }
  | { kind: "slice"; object: Record<string, unknown> }
  | { kind: "slice-deleted" };

export class Ingest {
  #state: ClusterState;
  #log: Logger;
  #metrics: KpxMetrics;
  #now: () => number;
  #warned = new Map<string, string>();
  #sliceService = new Map<string, string>();
  /** Trigger times from before kpx started describe changes an earlier run (or nobody) programmed. */
  #startedAt: number;
  #servicesPending = 0;
  #endpointsPending = 0;
  /** Per service id: the oldest change not yet programmed. */
  pending = new Map<string, PendingChange>();
  node: NodeSpec | null = null;
  /** Called after every accepted change. */
  onChange: () => void = () => {};

  constructor(state: ClusterState, log: Logger, metrics: KpxMetrics, now: () => number = Date.now) {
    this.#state = state;
    this.#log = log;
    this.#metrics = metrics;
    this.#now = now;
    this.#startedAt = now();
  }

  #mark(serviceId: string, cause: Cause): void {
    const prev = this.pending.get(serviceId);
    const next: PendingChange = {
      receivedAt: prev?.receivedAt ?? this.#now(),
      serviceChanged: prev?.serviceChanged ?? false,
      endpointChanges: prev?.endpointChanges ?? 0,
    };
    let triggeredAt = prev?.triggeredAt;
    if (cause.kind === "service") {
      // Services carry no trigger time; only endpoint changes are measured.
      next.serviceChanged = true;
    } else {
      next.endpointChanges++;
      if (cause.kind === "slice-deleted") {
        triggeredAt = undefined;
      } else {
        const t = triggerTime(cause.object);
        if (t !== undefined && t >= this.#startedAt) {
          triggeredAt = Math.min(t, triggeredAt ?? t);
        }
      }
    }
    if (triggeredAt !== undefined) next.triggeredAt = triggeredAt;
    this.#count(prev, -1);
    this.#count(next, +1);
    this.pending.set(serviceId, next);
  }

  #count(p: PendingChange | undefined, sign: 1 | -1): void {
    if (!p) return;
    if (p.serviceChanged) this.#servicesPending += sign;
    this.#endpointsPending += sign * p.endpointChanges;
    this.#metrics.serviceChangesPending.set(this.#servicesPending);
    this.#metrics.endpointChangesPending.set(this.#endpointsPending);
  }

  #invalid(kind: ObjectKind, o: Record<string, unknown>, e: InvalidObjectError): void {
    const id = `${kind} ${idOf(o)}`;
    const version = String(meta(o)["resourceVersion"] ?? "");
    const key = `${version}|${e.reason}`;
    if (this.#warned.get(id) === key) return;
    this.#warned.set(id, key);
    this.#metrics.skippedObjects.inc({ kind });
    this.#log.warn(e.message, { object: id, reason: e.reason });
  }

  event(kind: ObjectKind, type: EventType, o: Record<string, unknown>): void {
    try {
      if (kind === "Service") this.#service(type, o);
      else if (kind === "EndpointSlice") this.#slice(type, o);
      else this.#node(type, o);
    } catch (e) {
      if (!(e instanceof InvalidObjectError)) throw e;
      this.#invalid(kind, o, e);
      return;
    }
    this.#warned.delete(`${kind} ${idOf(o)}`);
    this.onChange();
  }

  #service(type: EventType, o: Record<string, unknown>): void {
    const id = idOf(o);
    this.#metrics.serviceChangesTotal.inc();
    if (type === "delete") {
      this.#state.deleteService(id);
      this.#mark(id, { kind: "service" });
      return;
    }
    const r = parseService(o);
    if (r.kind === "ignored") {
      // A service that became headless or another proxy's is no longer ours.
      this.#state.deleteService(id);
      this.#log.debug("Service ignored", { service: id, reason: r.reason });
    } else {
      this.#state.upsertService(r.spec);
    }
    this.#mark(id, { kind: "service" });
  }

  #slice(type: EventType, o: Record<string, unknown>): void {
    const id = idOf(o);
    this.#metrics.endpointChangesTotal.inc();
    const before = this.#sliceService.get(id);
    if (type === "delete") {
      this.#state.deleteSlice(id);
      if (before) this.#mark(before, { kind: "slice-deleted" });
      this.#sliceService.delete(id);
      return;
    }
    const r = parseEndpointSlice(o);
    if (r.kind === "ignored") {
      this.#state.deleteSlice(id);
      if (before) this.#mark(before, { kind: "slice-deleted" });
      this.#sliceService.delete(id);
      return;
    }
    this.#state.upsertSlice(r.spec);
    this.#sliceService.set(id, r.spec.serviceId);
    this.#mark(r.spec.serviceId, { kind: "slice", object: o });
    if (before && before !== r.spec.serviceId) this.#mark(before, { kind: "slice-deleted" });
  }

  #node(type: EventType, o: Record<string, unknown>): void {
    if (String(meta(o)["name"] ?? "") !== this.#state.nodeName) return;
    if (type === "delete") {
      this.node = null;
      this.#state.setNode(null);
      return;
    }
    const node = parseNode(o);
    if (JSON.stringify(node) !== JSON.stringify(this.node)) {
      this.node = node;
      this.#state.setNode(node);
    }
  }

  /** Takes the pending changes (the sync that follows programs them). */
  takePending(): Map<string, PendingChange> {
    const p = this.pending;
    this.pending = new Map();
    this.#servicesPending = 0;
    this.#endpointsPending = 0;
    this.#metrics.serviceChangesPending.set(0);
    this.#metrics.endpointChangesPending.set(0);
    return p;
  }

  /** Gives back changes a failed sync took: they are pending again, merged with newer ones. */
  restorePending(taken: ReadonlyMap<string, PendingChange>): void {
    for (const [id, old] of taken) {
      const cur = this.pending.get(id);
      const merged: PendingChange = {
        receivedAt: Math.min(old.receivedAt, cur?.receivedAt ?? old.receivedAt),
        serviceChanged: old.serviceChanged || (cur?.serviceChanged ?? false),
        endpointChanges: old.endpointChanges + (cur?.endpointChanges ?? 0),
      };
      const t = Math.min(old.triggeredAt ?? Infinity, cur?.triggeredAt ?? Infinity);
      if (Number.isFinite(t)) merged.triggeredAt = t;
      this.#count(cur, -1);
      this.#count(merged, +1);
      this.pending.set(id, merged);
    }
  }
}

function triggerTime(o: Record<string, unknown>): number | undefined {
  const raw = (meta(o)["annotations"] as Record<string, unknown> | undefined)?.[TRIGGER_TIME];
  const t = typeof raw === "string" ? Date.parse(raw) : NaN;
  return Number.isFinite(t) ? t : undefined;
}

export { SERVICE_NAME_LABEL };
