export { ManifestError, type ManifestObject, parseManifests } from "./manifests.ts";
export { manifestFiles, readManifestFile, readManifests } from "./files.ts";
export { chooseNode, type Fed, feedState } from "./feed.ts";
