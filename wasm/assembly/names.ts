// Every nftables name kpx uses, in one place. Names derived from Kubernetes
// objects are a hash plus a readable, length-capped suffix; they only ever
// appear inside JSON strings, never in nft syntax.

export const TABLE = "kpx";
export const FAMILY = "inet";

// Paths a packet can take to an endpoint list. The path decides which maps hold
// the list (keyed by service IP, or by node port) and whether the slot index
// carries the short-circuit bit.
export const PATH_VIP: i32 = 0; //       ClusterIP / external IP / LB IP, its own list
export const PATH_VIP_SC: i32 = 1; //    external IP / LB IP, eTP=Local, from inside the cluster
export const PATH_NODEPORT: i32 = 2; //  node port, its own list
export const PATH_NODEPORT_SC: i32 = 3; // node port, eTP=Local, from inside the cluster

export const PATH_NAMES: string[] = ["vip", "vip-sc", "np", "np-sc"];

/** Slot index in the endpoint maps: bit 31 separates the short-circuit list of
 *  an eTP=Local service from its local list, which share the same key. */
export function slotIndex(path: i32, slot: u32): u32 {
  return ((path == PATH_VIP_SC || path == PATH_NODEPORT_SC) ? 0x80000000 : 0) | slot;
}
/** The slot that holds the single port of a list whose endpoints share one port. */
export const ANY_SLOT: u32 = 0x7fffffff;

export function isNodePortPath(path: i32): bool {
  return path >= PATH_NODEPORT;
}

export function slotChain(path: i32, uniform: bool, slot: i32): string {
  return "slot-" + PATH_NAMES[path] + (uniform ? "-u-" : "-m-") + slot.toString();
}

export function pickChain(path: i32, uniform: bool, n: i32): string {
  return "pick-" + PATH_NAMES[path] + (uniform ? "-u-" : "-m-") + n.toString();
}

export function isSharedChain(name: string): bool {
  return name.startsWith("slot-") || name.startsWith("pick-");
}

export function generationSet(layout: u32): string {
  return "generation-l" + layout.toString();
}

// Fixed chains.
export const CHAIN_SERVICES = "services";
export const CHAIN_MASQUERADING = "masquerading";
export const CHAIN_CLASS_CLUSTERIP = "class-clusterip";
export const CHAIN_CLASS_EXTERNAL = "class-external";
export const CHAIN_CLASS_EXTERNAL_LOCAL = "class-external-local";
export const CHAIN_CLASS_NODEPORT = "class-nodeport";
export const CHAIN_CLASS_NODEPORT_LOCAL = "class-nodeport-local";
export const CHAIN_FIREWALL = "firewall-check";
export const CHAIN_SERVICE_ENDPOINTS = "service-endpoints-check";
export const CHAIN_NODEPORT_ENDPOINTS = "nodeport-endpoints-check";
export const CHAIN_CLUSTER_IPS = "cluster-ips-check";
export const CHAIN_REJECT = "reject-chain";

// FNV-1a, 64 bit: stable across runs and platforms, enough bits that
// per-service names do not collide in practice; the readable suffix makes a
// collision visible in `nft list` anyway.
export function hash64(s: string): string {
  let h: u64 = 0xcbf29ce484222325;
  for (let i = 0; i < s.length; i++) {
    h ^= <u64> s.charCodeAt(i);
    h *= 0x100000001b3;
  }
  let out = "";
  for (let i = 15; i >= 0; i--) {
    const d = <i32> ((h >> (<u64> i * 4)) & 15);
    out += String.fromCharCode(d < 10 ? 48 + d : 87 + d);
  }
  return out;
}

export function protoName(p: u8): string {
  return p == 1 ? "tcp" : p == 2 ? "udp" : "sctp";
}

/** "ns/name/tcp/http", capped so the whole name stays far below nft's 256. */
export function readablePort(svcId: string, portName: string, proto: u8): string {
  let s = svcId + "/" + protoName(proto) + "/" + (portName.length > 0 ? portName : "-");
  if (s.length > 160) s = s.substring(0, 160);
  return s;
}
