export { Counter, exponentialBuckets, Gauge, Histogram, Registry } from "./registry.ts";
export { type KpxMetrics, kpxMetrics } from "./kpx_metrics.ts";
