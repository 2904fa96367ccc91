/**
 * What the test API server serves: the resource types it knows, the object
 * shape it stores, and Kubernetes Status bodies for its errors.
 * @module
 */

/** A Kubernetes object as JSON. The server reads only metadata; the rest is kept as given. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

/** The metadata fields the server reads or assigns. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  resourceVersion?: string;
  uid?: string;
  generation?: number;
  creationTimestamp?: string;
  [field: string]: unknown;
}

/** The resources the server serves, by their plural (URL) name. */
export type ResourceName = "services" | "endpointslices" | "nodes";

/** How one resource appears in URLs and in the objects. */
export interface ResourceType {
  name: ResourceName;
  kind: string;
  listKind: string;
  apiVersion: string;
  /** "/api/v1" or "/apis/<group>/<version>": the prefix of every path of this resource. */
  prefix: string;
  namespaced: boolean;
}

export const RESOURCES: Readonly<Record<ResourceName, ResourceType>> = {
  services: {
    name: "services",
    kind: "Service",
    listKind: "ServiceList",
    apiVersion: "v1",
    prefix: "/api/v1",
    namespaced: true,
  },
  endpointslices: {
    name: "endpointslices",
    kind: "EndpointSlice",
    listKind: "EndpointSliceList",
    apiVersion: "discovery.k8s.io/v1",
    prefix: "/apis/discovery.k8s.io/v1",
    namespaced: true,
  },
  nodes: {
    name: "nodes",
    kind: "Node",
    listKind: "NodeList",
    apiVersion: "v1",
    prefix: "/api/v1",
    namespaced: false,
  },
};

/** The store's key of an object: "namespace/name", or "name" when cluster-scoped. */
export function objectKey(name: string, namespace: string | undefined): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** A metav1.Status, the body of every error the API server returns. */
export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; kind?: string };
}

export function failureStatus(
  code: number,
  reason: string,
  message: string,
  details?: Status["details"],
): Status {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
    ...(details ? { details } : {}),
  };
}

export function statusResponse(status: Status): Response {
  return Response.json(status, { status: status.code });
}
