/**
 * Manifests for a testbed node: its Node object, and Services whose
 * EndpointSlices point at the testbed's pods. Used by the demo and the daemon
 * tests; written as YAML files into a manifest directory kpx follows.
 */
import { stringify } from "yaml";
import type { NodeHandle, PodHandle } from "./testbed.ts";

export function nodeObject(node: NodeHandle): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: node.name, labels: { "topology.kubernetes.io/zone": `zone-${node.index}` } },
    spec: { podCIDRs: [node.podCidrV4, node.podCidrV6] },
    status: {
      addresses: [{ type: "InternalIP", address: node.ipv4 }, {
        type: "InternalIP",
        address: node.ipv6,
      }],
    },
  };
}

export interface ServiceOptions {
  name: string;
  clusterIP: string;
  port: number;
  targetPort: number;
  type?: "ClusterIP" | "NodePort" | "LoadBalancer";
  nodePort?: number;
  protocol?: "TCP" | "UDP";
  affinitySeconds?: number;
  extra?: Record<string, unknown>;
}

export function serviceObject(o: ServiceOptions): Record<string, unknown> {
  const spec: Record<string, unknown> = {
    type: o.type ?? "ClusterIP",
    clusterIP: o.clusterIP,
    ports: [{
      name: "web",
      port: o.port,
      targetPort: o.targetPort,
      protocol: o.protocol ?? "TCP",
      ...(o.nodePort ? { nodePort: o.nodePort } : {}),
    }],
    ...o.extra,
  };
  if (o.affinitySeconds) {
    spec["sessionAffinity"] = "ClientIP";
    spec["sessionAffinityConfig"] = { clientIP: { timeoutSeconds: o.affinitySeconds } };
  }
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: o.name, namespace: "default" },
    spec,
  };
}

export function sliceObject(
  service: string,
  pods: readonly PodHandle[],
  nodes: readonly NodeHandle[],
  o: { port: number; protocol?: "TCP" | "UDP" },
): Record<string, unknown> {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${service}-abc`,
      namespace: "default",
      labels: { "kubernetes.io/service-name": service },
    },
    addressType: "IPv4",
    ports: [{ name: "web", port: o.port, protocol: o.protocol ?? "TCP" }],
    endpoints: pods.map((p) => ({
      addresses: [p.ipv4],
      nodeName: nodes[p.node]!.name,
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: "Pod", name: p.name, namespace: "default" },
    })),
  };
}

/** Writes objects as one multi-document YAML file, atomically (write + rename). */
export async function writeManifest(
  path: string,
  objects: readonly Record<string, unknown>[],
): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  await Deno.writeTextFile(tmp, objects.map((o) => stringify(o)).join("---\n"));
  await Deno.rename(tmp, path);
}
