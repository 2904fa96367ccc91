/**
 * Objects from a source (API watch or manifest directory) into the cluster
 * state. Each invalid object is logged once per version, counted, and
 * skipped; the last valid version of it stays programmed, so a bad edit does
 * not take a working service down. Change times are kept per service, for the
 * change-to-kernel latency.
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
  /** When the change happened in the cluster, if the object says (trigger time). */
  triggeredAt?: number;
}

export class Ingest {
  #state: ClusterState;
  #log: Logger;
  #metrics: KpxMetrics;
  #now: () => number;
  #warned = new Map<string, string>();
  #sliceService = new Map<string, string>();
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
  }

  #mark(serviceId: string, o?: Record<string, unknown>): void {
    const at = this.#now();
    const raw = o
      ? (meta(o)["annotations"] as Record<string, unknown> | undefined)?.[TRIGGER_TIME]
      : undefined;
    const trig = typeof raw === "string" ? Date.parse(raw) : NaN;
    const prev = this.pending.get(serviceId);
    const next: PendingChange = { receivedAt: prev?.receivedAt ?? at };
    const t = Number.isFinite(trig) ? Math.min(trig, prev?.triggeredAt ?? trig) : prev?.triggeredAt;
    if (t !== undefined) next.triggeredAt = t;
    this.pending.set(serviceId, next);
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
      this.#mark(id);
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
    this.#mark(id, o);
  }

  #slice(type: EventType, o: Record<string, unknown>): void {
    const id = idOf(o);
    this.#metrics.endpointChangesTotal.inc();
    const before = this.#sliceService.get(id);
    if (type === "delete") {
      this.#state.deleteSlice(id);
      if (before) this.#mark(before, o);
      this.#sliceService.delete(id);
      return;
    }
    const r = parseEndpointSlice(o);
    if (r.kind === "ignored") {
      this.#state.deleteSlice(id);
      if (before) this.#mark(before, o);
      this.#sliceService.delete(id);
      return;
    }
    this.#state.upsertSlice(r.spec);
    this.#sliceService.set(id, r.spec.serviceId);
    this.#mark(r.spec.serviceId, o);
    if (before && before !== r.spec.serviceId) this.#mark(before, o);
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

  /** Takes the pending change times (the sync that follows programs them). */
  takePending(): Map<string, PendingChange> {
    const p = this.pending;
    this.pending = new Map();
    this.#metrics.serviceChangesPending.set(0);
    this.#metrics.endpointChangesPending.set(0);
    return p;
  }
}

export { SERVICE_NAME_LABEL };
