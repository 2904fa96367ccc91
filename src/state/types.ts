/**
 * The normalised picture of the cluster that the planner consumes. Kubernetes
 * API types stop at src/state/: these are validated, canonical and minimal.
 */
import type { IPFamily } from "./ip.ts";
import type { EndpointList } from "./endpoint_list.ts";

export type Protocol = "TCP" | "UDP" | "SCTP";

export interface ServicePortSpec {
  /** "" for the single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** 0 when the port has no node port. */
  nodePort: number;
}

/** A validated Service (v1), without its endpoints. */
export interface ServiceSpec {
  namespace: string;
  name: string;
  /** "namespace/name" */
  id: string;
  /** Canonical; at most one per family. */
  clusterIPs: string[];
  externalIPs: string[];
  /** status.loadBalancer.ingress IPs in VIP mode. */
  loadBalancerIPs: string[];
  /** Canonical CIDRs. */
  loadBalancerSourceRanges: string[];
  externalTrafficLocal: boolean;
  internalTrafficLocal: boolean;
  /** ClientIP affinity timeout in seconds; 0 = no affinity. */
  affinitySeconds: number;
  healthCheckNodePort: number;
  ports: ServicePortSpec[];
}

export interface EndpointSlicePort {
  name: string;
  protocol: Protocol;
  port: number;
}

/** An endpoint of a slice: its first address, conditions, node and topology hints. */
export interface EndpointSpec {
  address: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string;
  zoneHints: string[];
  nodeHints: string[];
}

/** A validated EndpointSlice (discovery.k8s.io/v1). */
export interface EndpointSliceSpec {
  namespace: string;
  name: string;
  /** "namespace/name" of the slice */
  id: string;
  /** "namespace/name" of the service it belongs to */
  serviceId: string;
  family: IPFamily;
  ports: EndpointSlicePort[];
  /** Held compactly (see endpoint_list.ts); at(i) or iteration gives EndpointSpecs. */
  endpoints: EndpointList;
}

export interface NodeSpec {
  name: string;
  zone: string;
  /** Canonical InternalIP/ExternalIP addresses, in the Node's order. */
  addresses: string[];
  /** The first InternalIP of each family (falling back to ExternalIP). */
  primaryIPs: string[];
  podCIDRs: string[];
  labels: Record<string, string>;
  /** Being deleted, or tainted for deletion by the cluster autoscaler. */
  deleting: boolean;
}

/** One endpoint of one service port, as the planner sees it. */
export interface Endpoint {
  address: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string;
  zoneHints: string[];
  nodeHints: string[];
}

export interface ServicePort extends ServicePortSpec {
  endpoints: Endpoint[];
}

/** A service joined with its endpoints: the planner's unit of work. */
export interface Service extends Omit<ServiceSpec, "ports" | "loadBalancerSourceRanges"> {
  ports: ServicePort[];
  /**
   * Sources allowed to reach the LB IPs, as non-overlapping CIDRs; empty: no
   * restriction. Built from loadBalancerSourceRanges plus, as kube-proxy does,
   * the LB IPs themselves when a range covers one of the node's IPs (a node
   * reaching a VIP-mode LB IP loops back with that IP as source).
   */
  firewallSourceRanges: string[];
}
