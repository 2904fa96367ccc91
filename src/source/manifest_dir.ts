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

const EXTENSIONS = [".yaml", ".yml", ".json"];

const KINDS: Record<string, { kind: SourceKind; apiVersions: string[] }> = {
  Service: { kind: "Service", apiVersions: ["v1"] },
  EndpointSlice: { kind: "EndpointSlice", apiVersions: ["discovery.k8s.io/v1"] },
  Node: { kind: "Node", apiVersions: ["v1"] },
};

/**
 * Content hash for change detection: two FNV-1a-style 32-bit hashes, 53 bits
 * of them kept in one number (a string of 16 hex digits per object was a
 * megabyte and more at 10k services).
 */
function contentHash(text: string): number {
  let h1 = 0x811c9dc5, h2 = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  return (h1 >>> 0) * 2 ** 21 + ((h2 >>> 0) >>> 11);
}

function keyOf(o: ManifestObject): string | null {
  const k = KINDS[o.kind];
  if (!k || !k.apiVersions.includes(o.apiVersion)) return null;
  const m = (o.object["metadata"] ?? {}) as Record<string, unknown>;
  return `${o.kind}/${m["namespace"] ?? (o.kind === "Node" ? "" : "default")}/${m["name"] ?? ""}`;
}

/** What keyOf() made the key of: enough to tell a handler which object is gone. */
function deleted(key: string): { kind: SourceKind; object: Record<string, unknown> } {
  const [kind, namespace, name] = key.split("/") as [SourceKind, string, string];
  const metadata = kind === "Node" ? { name } : { name, namespace };
  return { kind, object: { metadata } };
}

/** What was delivered for a key: its hash, and from which file (the last that had it). */
interface Delivered {
  hash: number;
  file: string;
}

export class ManifestDirSource {
  #dir: string;
  #log: Logger;
  #h: SourceHandlers;
  #debounceMs: number;
  /** file -> keys of the objects it contributes */
  #files = new Map<string, string[]>();
  /** key -> what was delivered (the key itself says enough to delete it) */
  #delivered = new Map<string, Delivered>();
  #watcher: Deno.FsWatcher | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Files changed since the last read; null: read the whole directory. */
  #dirty: Set<string> | null = new Set();
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
        for await (const ev of this.#watcher!) this.#schedule(ev);
      } catch (e) {
        if (!this.#stopped) this.#h.error(new Error(`Cannot watch ${this.#dir}`, { cause: e }));
      }
    })();
    await this.#rescan();
    this.#h.synced();
  }

  #schedule(ev: Deno.FsEvent): void {
    if (this.#stopped) return;
    // Only the files named change; anything else (a directory renamed, an
    // overflow of events) makes the next read a full one. Temporary files of
    // atomic writes (x.yaml.tmp-...) are not manifests.
    const manifest = (p: string) => EXTENSIONS.some((x) => p.endsWith(x));
    if (
      this.#dirty && ev.kind !== "other" && ev.paths.every((p) => manifest(p) || p.includes(".tmp"))
    ) {
      for (const p of ev.paths) if (manifest(p)) this.#dirty.add(p);
    } else {
      this.#dirty = null;
    }
    clearTimeout(this.#timer);
    // Editors write a file in several steps; one read after they settle.
    this.#timer = setTimeout(() => {
      const dirty = this.#dirty;
      this.#dirty = new Set();
      this.#reading = this.#reading.then(() => dirty ? this.#reread(dirty) : this.#rescan())
        .catch((e) => this.#h.error(e as Error));
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
    const present = new Set(files);
    for (const f of [...this.#files.keys()]) if (!present.has(f)) this.#removeFile(f);
    for (const f of files) await this.#readFile(f);
  }

  /** Re-reads only the given files (created, changed or removed). */
  async #reread(files: Set<string>): Promise<void> {
    for (const f of files) {
      try {
        await Deno.stat(f);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        this.#removeFile(f);
        continue;
      }
      await this.#readFile(f);
    }
  }

  #removeFile(f: string): void {
    for (const key of this.#files.get(f) ?? []) this.#drop(key, f);
    this.#files.delete(f);
  }

  #drop(key: string, file: string): void {
    const d = this.#delivered.get(key);
    if (!d || d.file !== file) return;
    this.#delivered.delete(key);
    const gone = deleted(key);
    this.#h.event(gone.kind, "delete", gone.object);
  }

  async #readFile(f: string): Promise<void> {
    let objects: ManifestObject[];
    try {
      objects = await readManifestFile(f);
    } catch (e) {
      if (!(e instanceof ManifestError)) throw e;
      // Keep what the file gave before; say why.
      this.#log.warn(`${e.message} (keeping its last readable contents)`);
      return;
    }
    const before = this.#files.get(f) ?? [];
    const now = new Set<string>();
    for (const o of objects) {
      const key = keyOf(o);
      if (!key) continue;
      const hash = contentHash(JSON.stringify(o.object));
      now.add(key);
      const d = this.#delivered.get(key);
      if (d?.hash === hash && d.file === f) continue;
      this.#delivered.set(key, { hash, file: f });
      if (d?.hash === hash) continue;
      this.#h.event(KINDS[o.kind]!.kind, "upsert", o.object);
    }
    for (const key of before) if (!now.has(key)) this.#drop(key, f);
    this.#files.set(f, [...now]);
  }

  stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    return this.#reading;
  }
}
