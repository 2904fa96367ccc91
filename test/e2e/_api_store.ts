/**
 * The test API server's storage: objects of each resource, one global
 * resourceVersion counter (like etcd's revision), and a bounded history of
 * changes. The history serves watch replays and consistent list pages; what
 * falls out of it is "compacted", and asking for it gets 410 Gone.
 * @module
 */
import {
  type KubeObject,
  objectKey,
  type ResourceName,
  RESOURCES,
  type ResourceType,
} from "./_api_types.ts";

/** One change, as the history keeps it. `previous` is the state before (absent for ADDED). */
export interface StoredEvent {
  resourceVersion: number;
  resource: ResourceName;
  type: "ADDED" | "MODIFIED" | "DELETED";
  /** The new state; for DELETED the last state, stamped with the deletion's resourceVersion. */
  object: KubeObject;
  previous?: KubeObject;
}

/** A store operation that cannot be done; `reason` is the Kubernetes Status reason. */
export class StoreError extends Error {
  override name = "StoreError";
  constructor(readonly reason: "AlreadyExists" | "NotFound", message: string) {
    super(message);
  }
}

export interface ObjectStoreOptions {
  /** Events kept for watch replay and list snapshots; older ones are compacted. Default 10,000. */
  historyLimit?: number;
  /** The resourceVersion before the first change. Default 1000. */
  initialResourceVersion?: number;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Everything but metadata, status, kind and apiVersion: a change here bumps metadata.generation. */
function specOf(o: KubeObject): string {
  const { metadata: _m, status: _s, kind: _k, apiVersion: _a, ...rest } = o;
  return JSON.stringify(rest);
}

/**
 * Objects by resource, with a history of changes. Returned objects are frozen:
 * tests change the store only through create/update/upsert/delete.
 */
export class ObjectStore {
  #rv: number;
  #compactedRv: number;
  #historyLimit: number;
  #history: StoredEvent[] = [];
  #objects = new Map<ResourceName, Map<string, KubeObject>>();
  #listeners = new Set<(event: StoredEvent) => void>();

  constructor(options: ObjectStoreOptions = {}) {
    this.#rv = options.initialResourceVersion ?? 1000;
    this.#compactedRv = this.#rv;
    this.#historyLimit = options.historyLimit ?? 10_000;
    for (const name of Object.keys(RESOURCES) as ResourceName[]) {
      this.#objects.set(name, new Map());
    }
  }

  /** The current resourceVersion: that of the last change. */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** Every event after this resourceVersion is still in the history. */
  get compactedResourceVersion(): string {
    return String(this.#compactedRv);
  }

  /** Adds an object; assigns uid, creationTimestamp, generation 1 and a resourceVersion. */
  create(resource: ResourceName, object: KubeObject): KubeObject {
    const type = RESOURCES[resource];
    const key = this.#key(type, object);
    if (this.#map(resource).has(key)) {
      throw new StoreError("AlreadyExists", `Cannot create ${resource} ${key}: it exists`);
    }
    const stored = this.#stamp(type, object, {
      uid: crypto.randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      generation: 1,
    });
    return this.#commit(resource, key, "ADDED", stored, undefined);
  }

  /** Replaces an object (last write wins: a given resourceVersion is not checked). */
  update(resource: ResourceName, object: KubeObject): KubeObject {
    const type = RESOURCES[resource];
    const key = this.#key(type, object);
    const previous = this.#map(resource).get(key);
    if (!previous) throw new StoreError("NotFound", `Cannot update ${resource} ${key}: not found`);
    const prevMeta = previous.metadata;
    const stored = this.#stamp(type, object, {
      uid: prevMeta.uid ?? crypto.randomUUID(),
      creationTimestamp: prevMeta.creationTimestamp ?? new Date().toISOString(),
      generation: (prevMeta.generation ?? 1) + (specOf(previous) === specOf(object) ? 0 : 1),
    });
    return this.#commit(resource, key, "MODIFIED", stored, previous);
  }

  /** Creates or updates. */
  upsert(resource: ResourceName, object: KubeObject): KubeObject {
    const key = this.#key(RESOURCES[resource], object);
    return this.#map(resource).has(key)
      ? this.update(resource, object)
      : this.create(resource, object);
  }

  /** Removes an object; returns its last state, stamped with the deletion's resourceVersion. */
  delete(resource: ResourceName, name: string, namespace?: string): KubeObject {
    const key = objectKey(name, RESOURCES[resource].namespaced ? namespace : undefined);
    const previous = this.#map(resource).get(key);
    if (!previous) throw new StoreError("NotFound", `Cannot delete ${resource} ${key}: not found`);
    const last = structuredClone(previous) as KubeObject;
    last.metadata.resourceVersion = String(this.#rv + 1);
    return this.#commit(resource, key, "DELETED", deepFreeze(last), previous);
  }

  get(resource: ResourceName, name: string, namespace?: string): KubeObject | undefined {
    return this.#map(resource).get(
      objectKey(name, RESOURCES[resource].namespaced ? namespace : undefined),
    );
  }

  /** The current objects of a resource, ordered by key (namespace/name). */
  list(resource: ResourceName): KubeObject[] {
    return sortedByKey(this.#map(resource));
  }

  /**
   * The objects of a resource as they were at `resourceVersion`, ordered by
   * key; undefined when the history no longer reaches back that far.
   */
  snapshotAt(resource: ResourceName, resourceVersion: number): KubeObject[] | undefined {
    if (resourceVersion < this.#compactedRv) return undefined;
    const state = new Map(this.#map(resource));
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const e = this.#history[i]!;
      if (e.resourceVersion <= resourceVersion) break;
      if (e.resource !== resource) continue;
      const key = objectKey(e.object.metadata.name, e.object.metadata.namespace);
      if (e.previous) state.set(key, e.previous);
      else state.delete(key);
    }
    return sortedByKey(state);
  }

  /** Events after `resourceVersion`, oldest first; undefined when some were compacted. */
  eventsAfter(resourceVersion: number): StoredEvent[] | undefined {
    if (resourceVersion < this.#compactedRv) return undefined;
    return this.#history.filter((e) => e.resourceVersion > resourceVersion);
  }

  /** Forgets the history up to `resourceVersion` (default: all of it), as etcd compaction does. */
  compact(resourceVersion: string | number = this.#rv): void {
    const rv = Math.min(Number(resourceVersion), this.#rv);
    if (!Number.isInteger(rv)) {
      throw new RangeError(`Cannot compact the store: "${resourceVersion}" is not a number`);
    }
    if (rv <= this.#compactedRv) return;
    this.#history = this.#history.filter((e) => e.resourceVersion > rv);
    this.#compactedRv = rv;
  }

  /**
   * Loses every object without DELETED events (an etcd restored empty). The
   * resourceVersion moves on and the history is compacted, so every client
   * watching from before gets 410 and relists.
   */
  wipe(): void {
    for (const m of this.#objects.values()) m.clear();
    this.#rv++;
    this.compact(this.#rv);
  }

  /** Calls `listener` synchronously after each change; returns the unsubscribe function. */
  subscribe(listener: (event: StoredEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #map(resource: ResourceName): Map<string, KubeObject> {
    const m = this.#objects.get(resource);
    if (!m) throw new RangeError(`Cannot use resource "${resource}": the server does not serve it`);
    return m;
  }

  #key(type: ResourceType, object: KubeObject): string {
    const name = object.metadata?.name;
    if (!name) throw new TypeError(`Cannot store a ${type.kind} without metadata.name`);
    if (type.namespaced && !object.metadata.namespace) {
      throw new TypeError(`Cannot store ${type.kind} ${name}: it has no metadata.namespace`);
    }
    return objectKey(name, type.namespaced ? object.metadata.namespace : undefined);
  }

  #stamp(
    type: ResourceType,
    object: KubeObject,
    meta: { uid: string; creationTimestamp: string; generation: number },
  ): KubeObject {
    const copy = structuredClone(object) as KubeObject;
    copy.apiVersion = type.apiVersion;
    copy.kind = type.kind;
    if (!type.namespaced) delete copy.metadata.namespace;
    copy.metadata = { ...copy.metadata, ...meta, resourceVersion: String(this.#rv + 1) };
    return deepFreeze(copy);
  }

  #commit(
    resource: ResourceName,
    key: string,
    type: StoredEvent["type"],
    object: KubeObject,
    previous: KubeObject | undefined,
  ): KubeObject {
    this.#rv++;
    if (type === "DELETED") this.#map(resource).delete(key);
    else this.#map(resource).set(key, object);
    const event: StoredEvent = {
      resourceVersion: this.#rv,
      resource,
      type,
      object,
      ...(previous ? { previous } : {}),
    };
    this.#history.push(event);
    if (this.#history.length > this.#historyLimit) {
      this.compact(this.#history[this.#history.length - this.#historyLimit - 1]!.resourceVersion);
    }
    for (const listener of [...this.#listeners]) listener(event);
    return object;
  }
}

function sortedByKey(m: Map<string, KubeObject>): KubeObject[] {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
}
