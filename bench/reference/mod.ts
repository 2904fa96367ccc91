/**
 * kube-proxy's rule layouts, generated for the same services kpx plans, so the
 * benchmark can load both into a namespace and compare. Measuring sticks only:
 * nothing in src/ imports them. Each file says which kube-proxy it follows.
 * @module
 */
export {
  KUBE_NFTABLES_SYNC_LISTINGS,
  type KubeNftablesChange,
  kubeNftablesChange,
  kubeNftablesFull,
} from "./kube_nftables.ts";
export { kubeIptablesChange, kubeIptablesChunks, kubeIptablesFull } from "./kube_iptables.ts";
export { REFERENCE_OPTIONS, type ReferenceOptions } from "./options.ts";
