export { ManifestError, type ManifestObject, parseManifests } from "./manifests.ts";
export { manifestFiles, readManifestFile, readManifests } from "./files.ts";
export { chooseNode, type Fed, feedState } from "./feed.ts";
export { ManifestDirSource, type SourceHandlers, type SourceKind } from "./manifest_dir.ts";
export type { ApiSource, ApiSourceOptions } from "./api.ts";

/**
 * The API source, loaded on first use: client-node costs tens of megabytes
 * of memory, which a node following a manifest directory need not pay.
 */
export async function loadApiSource(): Promise<typeof import("./api.ts")> {
  return await import("./api.ts");
}
