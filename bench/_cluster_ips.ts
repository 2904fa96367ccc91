/**
 * The ClusterIP of synthetic service i, as bench/synthetic.ts assigns it.
 * Kept import-free for the load generator (which runs with --no-config);
 * compare_bench.ts checks that both agree.
 */
export function syntheticClusterIP(i: number): string {
  return `10.${96 + (i >> 16)}.${i >> 8 & 255}.${i & 255}`;
}
