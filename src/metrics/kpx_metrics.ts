/**
 * kpx's metrics. kube-proxy's names where they mean the same thing, so
 * existing dashboards and alerts keep working; kpx_* for what is kpx's own.
 */
import { exponentialBuckets, Registry } from "./registry.ts";

// kube-proxy's sync histogram buckets: 1 ms doubling to ~16 s.
const SYNC_BUCKETS = exponentialBuckets(0.001, 2, 15);
// network_programming_duration: kube-proxy uses 0.25 s steps up to minutes.
const PROGRAMMING_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  15,
  20,
  25,
  30,
  45,
  60,
  120,
  300,
];

export function kpxMetrics(registry = new Registry()) {
  return {
    registry,
    syncDuration: registry.histogram(
      "kubeproxy_sync_proxy_rules_duration_seconds",
      "SyncProxyRules latency in seconds",
      SYNC_BUCKETS,
    ),
    syncFullDuration: registry.histogram(
      "kubeproxy_sync_full_proxy_rules_duration_seconds",
      "SyncProxyRules latency in seconds for full resyncs",
      SYNC_BUCKETS,
    ),
    syncPartialDuration: registry.histogram(
      "kubeproxy_sync_partial_proxy_rules_duration_seconds",
      "SyncProxyRules latency in seconds for partial resyncs",
      SYNC_BUCKETS,
    ),
    networkProgramming: registry.histogram(
      "kubeproxy_network_programming_duration_seconds",
      "In Cluster Network Programming Latency in seconds (object change to rules in the kernel)",
      PROGRAMMING_BUCKETS,
    ),
    lastSync: registry.gauge(
      "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
      "The last time proxy rules were successfully synced",
    ),
    lastQueued: registry.gauge(
      "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
      "The last time a sync of proxy rules was queued",
    ),
    endpointChangesPending: registry.gauge(
      "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
      "Pending proxy rules Endpoint changes",
    ),
    endpointChangesTotal: registry.counter(
      "kubeproxy_sync_proxy_rules_endpoint_changes_total",
      "Cumulative proxy rules Endpoint changes",
    ),
    serviceChangesPending: registry.gauge(
      "kubeproxy_sync_proxy_rules_service_changes_pending",
      "Pending proxy rules Service changes",
    ),
    serviceChangesTotal: registry.counter(
      "kubeproxy_sync_proxy_rules_service_changes_total",
      "Cumulative proxy rules Service changes",
    ),
    noLocalEndpoints: registry.gauge(
      "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
      "Number of services with a Local traffic policy and no endpoints",
    ),
    nftablesSyncFailures: registry.counter(
      "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
      "Number of failed nftables syncs",
    ),
    healthzTotal: registry.counter(
      "kubeproxy_proxy_healthz_total",
      "Cumulative proxy healthz HTTP status",
    ),
    livezTotal: registry.counter(
      "kubeproxy_proxy_livez_total",
      "Cumulative proxy livez HTTP status",
    ),
    applyFailures: registry.counter(
      "kpx_apply_failures_total",
      "Batches the kernel refused (nothing was applied)",
    ),
    verifyFailures: registry.counter(
      "kpx_verify_failures_total",
      "Applies whose read-back did not match the plan",
    ),
    rollbacks: registry.counter(
      "kpx_rollbacks_total",
      "Restores of the last good ruleset after a failed verification",
    ),
    skippedObjects: registry.counter(
      "kpx_skipped_objects_total",
      "Objects skipped as invalid or in conflict, by kind",
    ),
    plannerDuration: registry.histogram(
      "kpx_planner_duration_seconds",
      "Time spent in the WebAssembly planner, by mode",
      SYNC_BUCKETS,
    ),
    batchBytes: registry.gauge(
      "kpx_last_batch_bytes",
      "Size of the last applied nftables batch, by mode",
    ),
    generation: registry.gauge("kpx_rules_generation", "Generation of the rules in the kernel"),
    conntrackDeleted: registry.counter(
      "kpx_conntrack_entries_deleted_total",
      "Stale UDP conntrack entries deleted",
    ),
    conntrackFailures: registry.counter(
      "kpx_conntrack_cleanup_failures_total",
      "Conntrack cleanups that failed",
    ),
    services: registry.gauge("kpx_services", "Services programmed"),
    changeToKernel: registry.histogram(
      "kpx_change_to_kernel_seconds",
      "From kpx receiving a Service or EndpointSlice change to the rules being in the kernel",
      PROGRAMMING_BUCKETS,
    ),
    sourceErrors: registry.counter(
      "kpx_source_errors_total",
      "Errors watching the API or the manifest directory, by source",
    ),
  };
}

export type KpxMetrics = ReturnType<typeof kpxMetrics>;
