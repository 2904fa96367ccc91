export { ManifestError, type ManifestObject, parseManifests } from "./manifests.ts";
export { manifestFiles, readManifestFile, readManifests } from "./files.ts";
export { chooseNode, type Fed, feedState } from "./feed.ts";
export { ManifestDirSource, type SourceHandlers, type SourceKind } from "./manifest_dir.ts";
export { ApiSource, type ApiSourceOptions, loadKubeConfig, SERVICE_SELECTOR, SLICE_SELECTOR, slim } from "./api.ts";
