/** Reads manifest files and directories from disk. */
import { ManifestError, type ManifestObject, parseManifests } from "./manifests.ts";

const EXTENSIONS = [".yaml", ".yml", ".json"];

/** Files under a path, sorted: the path itself, or a directory's manifests (recursively). */
export async function manifestFiles(path: string): Promise<string[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new ManifestError(path, (e as Error).message, { cause: e });
  }
  if (!info.isDirectory) return [path];
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(dir)) entries.push(e);
    } catch (e) {
      throw new ManifestError(dir, (e as Error).message, { cause: e });
    }
    entries.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const e of entries) {
      // Editors and kubectl leave dotfiles (swap files, .kube caches) around.
      if (e.name.startsWith(".")) continue;
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (EXTENSIONS.some((x) => e.name.endsWith(x))) out.push(p);
    }
  };
  await walk(path.replace(/\/+$/, ""));
  return out;
}

export async function readManifestFile(file: string): Promise<ManifestObject[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ManifestError(file, (e as Error).message, { cause: e });
  }
  return parseManifests(text, file);
}

/** Every object under the given paths, in a stable order. */
export async function readManifests(paths: readonly string[]): Promise<ManifestObject[]> {
  const out: ManifestObject[] = [];
  for (const p of paths) {
    for (const f of await manifestFiles(p)) out.push(...await readManifestFile(f));
  }
  return out;
}
