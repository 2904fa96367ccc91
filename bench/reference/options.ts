/** The node and proxy settings the reference layouts are generated for. */
export interface ReferenceOptions {
  /** detect-local by cluster CIDR (kube-proxy's default with --cluster-cidr). */
  clusterCIDR: string;
  /** Bit of the packet mark that flags masquerading (kube-proxy's default: 14). */
  masqueradeBit: number;
  /** Service CIDRs (nftables mode drops traffic to unallocated addresses in them). */
  serviceCIDRs: string[];
}

/** The same settings as bench/plan_bench.ts's BENCH_CONTEXT gives kpx. */
export const REFERENCE_OPTIONS: ReferenceOptions = {
  clusterCIDR: "10.64.0.0/10",
  masqueradeBit: 14,
  serviceCIDRs: ["10.96.0.0/12"],
};
