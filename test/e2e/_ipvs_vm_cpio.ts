/**
 * A minimal writer for the "newc" cpio format the kernel unpacks as initramfs.
 *
 * Written here rather than shelling out to `cpio` (not installed on Debian by default) or
 * `busybox cpio` so that archives are built from an in-memory description: no staging
 * directory, deterministic output (fixed mtime, uid 0), and host files streamed in chunks.
 *
 * @module
 */

/** Where the bytes of a regular file come from. */
export type CpioSource = { readonly hostPath: string } | { readonly bytes: Uint8Array };

/** One entry of an archive, keyed by its absolute guest path. */
export type CpioEntry =
  | { readonly kind: "dir"; readonly mode: number }
  | { readonly kind: "file"; readonly mode: number; readonly source: CpioSource }
  | { readonly kind: "symlink"; readonly target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const TRAILER = "TRAILER!!!";
const encoder = new TextEncoder();

/**
 * Merged-/usr layout, as on Debian 12: the top-level directories are symlinks into /usr.
 * Every path is stored under its /usr name so that two layers never disagree about whether
 * /bin is a directory or a symlink (the kernel would refuse to replace one by the other).
 */
const MERGED_USR = ["bin", "sbin", "lib", "lib64"];

/** Normalises a guest path: absolute, no `.`/`..`/empty parts, merged-/usr names. */
export function guestPath(path: string): string {
  if (!path.startsWith("/")) {
    throw new TypeError(`Cannot use guest path "${path}": it is not absolute`);
  }
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new TypeError(`Cannot use guest path "${path}": it contains ".."`);
  }
  if (parts.length > 0 && MERGED_USR.includes(parts[0] ?? "")) parts.unshift("usr");
  return "/" + parts.join("/");
}

/** An archive under construction: a map from guest path to entry; parents are implicit. */
export class CpioTree {
  #entries = new Map<string, CpioEntry>();

  /** Number of entries added explicitly (parents not counted). */
  get size(): number {
    return this.#entries.size;
  }

  has(path: string): boolean {
    return this.#entries.has(guestPath(path));
  }

  addDir(path: string, mode = 0o755): void {
    this.#entries.set(guestPath(path), { kind: "dir", mode });
  }

  addFile(path: string, source: CpioSource, mode = 0o644): void {
    this.#entries.set(guestPath(path), { kind: "file", mode, source });
  }

  /** Adds a symlink; the target is stored verbatim (it may be relative). */
  addSymlink(path: string, target: string): void {
    this.#entries.set(guestPath(path), { kind: "symlink", target });
  }

  /** Adds a symlink at the top level, bypassing the merged-/usr renaming (for /bin → usr/bin). */
  addTopLevelSymlink(name: string, target: string): void {
    if (name.includes("/")) {
      throw new TypeError(`Cannot add top-level symlink "${name}": the name contains "/"`);
    }
    this.#entries.set("/" + name, { kind: "symlink", target });
  }

  /**
   * The archive as a byte stream. Parent directories come before their children (the kernel
   * does not create missing parents), and the stream ends with the TRAILER!!! entry.
   */
  stream(): ReadableStream<Uint8Array> {
    return ReadableStream.from(this.#chunks());
  }

  /** Writes the archive to `path`, gzip-compressed when `gzip` is set. */
  async writeFile(path: string, options: { gzip: boolean }): Promise<void> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    let stream = this.stream();
    if (options.gzip) {
      stream = stream.pipeThrough(
        new CompressionStream("gzip") as TransformStream<
          Uint8Array,
          Uint8Array
        >,
      );
    }
    // pipeTo closes the file on success and on error.
    await stream.pipeTo(file.writable);
  }

  #withParents(): Map<string, CpioEntry> {
    const all = new Map<string, CpioEntry>();
    for (const [path, entry] of this.#entries) {
      const parts = path.split("/").slice(1, -1);
      for (let i = 1; i <= parts.length; i++) {
        const parent = "/" + parts.slice(0, i).join("/");
        if (!this.#entries.has(parent) && !all.has(parent)) {
          all.set(parent, { kind: "dir", mode: 0o755 });
        }
      }
      all.set(path, entry);
    }
    return all;
  }

  async *#chunks(): AsyncGenerator<Uint8Array> {
    const all = this.#withParents();
    // A parent path is a prefix of its children's, so plain sorting puts it first.
    const paths = [...all.keys()].sort();
    let ino = 1;
    let offset = 0;
    for (const path of paths) {
      const entry = all.get(path);
      if (entry === undefined) continue;
      const name = path.slice(1); // archives hold paths relative to the root
      if (entry.kind === "dir") {
        const header = newcHeader(name, { ino: ino++, mode: S_IFDIR | entry.mode, nlink: 2 }, 0);
        offset += header.length;
        yield header;
      } else if (entry.kind === "symlink") {
        const data = encoder.encode(entry.target);
        const header = newcHeader(
          name,
          { ino: ino++, mode: S_IFLNK | 0o777, nlink: 1 },
          data.length,
        );
        yield header;
        yield data;
        const pad = padding(data.length);
        yield pad;
        offset += header.length + data.length + pad.length;
      } else {
        const size = await sourceSize(entry.source, path);
        const header = newcHeader(name, { ino: ino++, mode: S_IFREG | entry.mode, nlink: 1 }, size);
        yield header;
        let written = 0;
        for await (const chunk of sourceChunks(entry.source)) {
          written += chunk.length;
          yield chunk;
        }
        if (written !== size) {
          throw new Error(
            `Cannot archive "${path}": its source changed size while being read (${size} → ${written})`,
          );
        }
        const pad = padding(size);
        yield pad;
        offset += header.length + size + pad.length;
      }
    }
    const trailer = newcHeader(TRAILER, { ino: 0, mode: 0, nlink: 1 }, 0);
    offset += trailer.length;
    yield trailer;
    // Pad the whole archive to 512 bytes so further archives can be concatenated after it:
    // the kernel skips zero bytes between archives, and wants each to start 4-byte aligned.
    yield new Uint8Array((512 - (offset % 512)) % 512);
  }
}

function newcHeader(
  name: string,
  meta: { ino: number; mode: number; nlink: number },
  fileSize: number,
): Uint8Array {
  const nameBytes = encoder.encode(name + "\0");
  const fields = [
    meta.ino,
    meta.mode,
    0, // uid
    0, // gid
    meta.nlink,
    0, // mtime: fixed, for reproducible archives
    fileSize,
    0, // devmajor
    0, // devminor
    0, // rdevmajor
    0, // rdevminor
    nameBytes.length,
    0, // check (unused by "070701")
  ];
  const text = "070701" + fields.map((f) => f.toString(16).padStart(8, "0")).join("");
  const headerLength = text.length + nameBytes.length;
  const out = new Uint8Array(headerLength + padding(headerLength).length);
  out.set(encoder.encode(text), 0);
  out.set(nameBytes, text.length);
  return out;
}

/** Zero bytes that bring `length` to a multiple of 4 (newc aligns headers and data). */
function padding(length: number): Uint8Array {
  return new Uint8Array((4 - (length % 4)) % 4);
}

async function sourceSize(source: CpioSource, path: string): Promise<number> {
  if ("bytes" in source) return source.bytes.length;
  try {
    // stat follows symlinks: the archive gets the content, which is what the guest needs.
    const info = await Deno.stat(source.hostPath);
    if (!info.isFile) throw new Error(`"${source.hostPath}" is not a regular file`);
    return info.size;
  } catch (error) {
    throw new Error(`Cannot archive "${path}": cannot read host file "${source.hostPath}"`, {
      cause: error,
    });
  }
}

async function* sourceChunks(source: CpioSource): AsyncGenerator<Uint8Array> {
  if ("bytes" in source) {
    yield source.bytes;
    return;
  }
  const file = await Deno.open(source.hostPath, { read: true });
  // The readable stream closes the file when it ends or is cancelled.
  yield* file.readable;
}
