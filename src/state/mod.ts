export type {
  Endpoint,
  EndpointSlicePort,
  EndpointSliceSpec,
  EndpointSpec,
  NodeSpec,
  Protocol,
  Service,
  ServicePort,
  ServicePortSpec,
  ServiceSpec,
} from "./types.ts";
export { ConflictError, InvalidObjectError } from "./errors.ts";
export { cidrContains, collapseCIDRs, hostCIDR, type IPFamily, parseCIDR, parseIP } from "./ip.ts";
export {
  DEFAULT_AFFINITY_SECONDS,
  parseService,
  SERVICE_PROXY_NAME_LABEL,
  type ServiceResult,
} from "./service.ts";
export {
  type EndpointSliceResult,
  HEADLESS_LABEL,
  parseEndpointSlice,
  SERVICE_NAME_LABEL,
} from "./endpoint_slice.ts";
export { parseNode, ZONE_LABEL } from "./node.ts";
export { joinService } from "./join.ts";
export { EndpointList } from "./endpoint_list.ts";
export { type Changes, ClusterState } from "./store.ts";
