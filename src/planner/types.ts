/** What the planner needs besides the services: node and proxy settings. */
export interface PlanContext {
  /** The name endpoints' nodeName is compared with (hostnameOverride applied). */
  nodeName: string;
  /** topology.kubernetes.io/zone of this node, "" if none. */
  nodeZone: string;
  /** Bit of the packet mark used to flag packets for masquerading (kube-proxy: 14). */
  masqueradeBit: number;
  masqueradeAll: boolean;
  /** Drop packets conntrack marks invalid on forward (false with tcpBeLiberal). */
  dropInvalid: boolean;
  localDetection: LocalDetection;
  /** null: every local address except loopback; else only addresses in these CIDRs. */
  nodePortAddresses: string[] | null;
  /** Traffic to unallocated IPs in these CIDRs is rejected. */
  serviceCIDRs: string[];
  /** IPVS mode only (see src/planner/ipvs.ts); absent in nftables mode. */
  ipvs?: IPVSContext;
}

/** What IPVS mode adds to the context. */
export interface IPVSContext {
  /** Scheduler of every virtual service (ipvsadm -s). */
  scheduler: string;
  /** Node addresses that get node-port virtual services (canonical, sorted). */
  nodeIPs: string[];
}

export type LocalDetection =
  | { mode: "None" }
  | { mode: "CIDR"; cidrs: string[] }
  | { mode: "BridgeInterface"; interfaceName: string }
  | { mode: "InterfaceNamePrefix"; interfacePrefix: string };

/** kpx's objects currently in the kernel table (names only). */
export interface Inventory {
  /** Layout version of the table (0: no kpx table). */
  layout: number;
  chains: string[];
  /** Sets other than the fixed ones (affinity sets, the generation marker). */
  sets: string[];
}

export const EMPTY_INVENTORY: Inventory = { layout: 0, chains: [], sets: [] };

export interface PlanOutput {
  /**
   * The nftables JSON batch, for `nft -j -f`. A full sync's is joined from
   * its chunks when first read: the applier streams the chunks instead, and
   * never holds the batch twice (8 MB at 10k services).
   */
  readonly batch: Uint8Array;
  /** The batch's bytes, in order, in one or more pieces. */
  readonly chunks: readonly Uint8Array[];
  /** The batch's length. */
  readonly bytes: number;
  /** "chain:<name>" / "set:<name>" objects the batch creates. */
  added: string[];
  /** Objects the batch deletes. */
  removed: string[];
  warnings: string[];
  /** Size of the encoded input the planner was given (what a delta's cost scales with). */
  inputBytes: number;
}
