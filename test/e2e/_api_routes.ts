/**
 * URL paths of the test API server: resource paths (cluster-wide and
 * namespaced collections, single objects) and the discovery documents a
 * client may read (/version, /api, /apis, /api/v1, /apis/<group>/<version>).
 * @module
 */
import { RESOURCES, type ResourceType } from "./_api_types.ts";

/** What a path names. */
export type Route =
  | { kind: "collection"; type: ResourceType; namespace: string | undefined }
  | { kind: "object"; type: ResourceType; namespace: string | undefined; name: string }
  | { kind: "discovery"; body: unknown };

const TYPES = Object.values(RESOURCES);
const PREFIXES = [...new Set(TYPES.map((t) => t.prefix))];

function resourceList(prefix: string): unknown {
  const types = TYPES.filter((t) => t.prefix === prefix);
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: types[0]?.apiVersion ?? "",
    resources: types.map((t) => ({
      name: t.name,
      singularName: t.kind.toLowerCase(),
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: ["get", "list", "watch"],
    })),
  };
}

function discovery(path: string, serverAddress: string): unknown {
  switch (path) {
    case "/version":
      return {
        major: "1",
        minor: "33",
        gitVersion: "v1.33.0-kpx-test",
        platform: "linux/amd64",
      };
    case "/api":
      return {
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
      };
    case "/apis": {
      const groups = TYPES.filter((t) => t.apiVersion.includes("/")).map((t) => {
        const [name = "", version = ""] = t.apiVersion.split("/");
        const gv = { groupVersion: t.apiVersion, version };
        return { name, versions: [gv], preferredVersion: gv };
      });
      return { kind: "APIGroupList", apiVersion: "v1", groups };
    }
  }
  return PREFIXES.includes(path) ? resourceList(path) : undefined;
}

/** Reads a request path; undefined for a path the server does not serve (404). */
export function parseRoute(path: string, serverAddress: string): Route | undefined {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const body = discovery(trimmed, serverAddress);
  if (body !== undefined) return { kind: "discovery", body };
  const prefix = PREFIXES.find((p) => trimmed.startsWith(p + "/"));
  if (!prefix) return undefined;
  const parts = trimmed.slice(prefix.length + 1).split("/").map(decodeURIComponent);
  let namespace: string | undefined;
  if (parts[0] === "namespaces" && parts.length >= 3) {
    namespace = parts[1];
    parts.splice(0, 2);
  }
  const type = TYPES.find((t) => t.prefix === prefix && t.name === parts[0]);
  // A cluster-scoped resource has no namespaced paths.
  if (!type || (namespace !== undefined && !type.namespaced)) return undefined;
  if (parts.length === 1) return { kind: "collection", type, namespace };
  if (parts.length === 2 && parts[1]) {
    // A namespaced object is only addressed inside its namespace.
    if (type.namespaced && namespace === undefined) return undefined;
    return { kind: "object", type, namespace, name: parts[1] };
  }
  return undefined;
}
