/**
 * A directory of manifests as a source, for air-gapped nodes and the demo:
 * read it all, then follow changes (Deno.watchFs, debounced). A file that
 * does not parse (half-written, say) keeps contributing its last good objects
 * until it parses again.
 */
import type { Logger } from "../log/mod.ts";
import { ManifestError, type ManifestObject } from "./manifests.ts";
import { manifestFiles, readManifestFile } from "./files.ts";

export type SourceKind = "Service" | "EndpointSlice" | "Node";

export interface SourceHandlers {
  event(kind: SourceKind, type: "upsert" | "delete", object: Record<string, unknown>): void;
  /** The first complete picture has been delivered. */
  synced(): void;
  error(err: Error): void;
}

const KINDS: Record<string, { kind: SourceKind; apiVersions: string[] }> = {
  Service: { kind: "Service", apiVersions: ["v1"] },
  EndpointSlice: { kind: "EndpointSlice", apiVersions: ["discovery.k8s.io/v1"] },
  Node: { kind: "Node", apiVersions: ["v1"] },
};

function keyOf(o: ManifestObject): string | null {
  const k = KINDS[o.kind];
  if (!k || !k.apiVersions.includes(o.apiVersion)) return null;
  const m = (o.object["metadata"] ?? {}) as Record<string, unknown>;
  return `${o.kind}/${m["namespace"] ?? (o.kind === "Node" ? "" : "default")}/${m["name"] ?? ""}`;
}

export class ManifestDirSource {
  #dir: string;
  #log: Logger;
  #h: SourceHandlers;
  #debounceMs: number;
  /** file -> objects it contributed (by key) */
  #files = new Map<string, Map<string, ManifestObject>>();
  /** key -> JSON of what was delivered */
  #delivered = new Map<string, string>();
  #watcher: Deno.FsWatcher | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #reading: Promise<void> = Promise.resolve();

  constructor(opts: { dir: string; log: Logger; handlers: SourceHandlers; debounceMs?: number }) {
    this.#dir = opts.dir;
    this.#log = opts.log;
    this.#h = opts.handlers;
    this.#debounceMs = opts.debounceMs ?? 100;
  }

  async start(): Promise<void> {
    // Watch before the first read, so no change can slip between the two.
    this.#watcher = Deno.watchFs(this.#dir, { recursive: true });
    (async () => {
      try {
        for await (const _ of this.#watcher!) this.#schedule();
      } catch (e) {
        if (!this.#stopped) this.#h.error(new Error(`Cannot watch ${this.#dir}`, { cause: e }));
      }
    })();
    await this.#rescan();
    this.#h.synced();
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    // Editors write a file in several steps; one rescan after they settle.
    this.#timer = setTimeout(() => {
      this.#reading = this.#reading.then(() => this.#rescan()).catch((e) => this.#h.error(e as Error));
    }, this.#debounceMs);
  }

  async #rescan(): Promise<void> {
    let files: string[];
    try {
      files = await manifestFiles(this.#dir);
    } catch (e) {
      this.#h.error(e as Error);
      return;
    }
    const seen = new Set(files);
    for (const f of files) {
      let objects: ManifestObject[];
      try {
        objects = await readManifestFile(f);
      } catch (e) {
        if (!(e instanceof ManifestError)) throw e;
        // Keep what the file gave before; say why once per change.
        this.#log.warn(`${e.message} (keeping its last readable contents)`);
        continue;
      }
      const byKey = new Map<string, ManifestObject>();
      for (const o of objects) {
        const k = keyOf(o);
        if (k) byKey.set(k, o);
      }
      this.#files.set(f, byKey);
    }
    for (const f of [...this.#files.keys()]) if (!seen.has(f)) this.#files.delete(f);
    this.#deliver();
  }

  #deliver(): void {
    const now = new Map<string, ManifestObject>();
    for (const objs of this.#files.values()) for (const [k, o] of objs) now.set(k, o);
    for (const [k, o] of now) {
      const json = JSON.stringify(o.object);
      if (this.#delivered.get(k) === json) continue;
      this.#delivered.set(k, json);
      this.#h.event(KINDS[o.kind]!.kind, "upsert", o.object);
    }
    for (const [k, json] of [...this.#delivered]) {
      if (now.has(k)) continue;
      this.#delivered.delete(k);
      this.#h.event(k.split("/")[0] as SourceKind, "delete", JSON.parse(json));
    }
  }

  stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    return this.#reading;
  }
}
