/** What the comparison measures, as data: filled by compare_run.ts, rendered by compare_report.ts. */
import type { LayoutName } from "./compare_layouts.ts";
import type { ClientSpec } from "./dataplane_client.ts";
import type { PlanCost } from "./plan_cost.ts";

/** layout -> number of services -> one value per sample. */
export type Samples = Partial<Record<LayoutName, Record<number, number[]>>>;

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  nft: string;
  iptablesNft: string;
  iptablesLegacy: string;
  deno: string;
}

export interface CompareSettings {
  mode: "quick" | "full";
  /** Numbers of services, ascending; each has ENDPOINTS endpoints. */
  sizes: number[];
  endpoints: number;
  /** Rulesets loaded per layout and size (fewer for loads predicted to take long). */
  runs: number;
  /** One-service changes applied per loaded ruleset. */
  changes: number;
  /** A single timed full load predicted longer than this is not attempted. */
  maxLoadSeconds: number;
  /** Loads predicted longer than this are done once per size, not `runs` times. */
  repeatLoadSeconds: number;
  /** The load generator's settings (services is set per size). */
  dataplane: Omit<ClientSpec, "services">;
}

export interface CompareResults {
  settings: CompareSettings;
  machine: MachineInfo;
  /** Full sync into an empty namespace, ms. */
  fullSyncMs: Samples;
  /** Why a full sync was not timed, by layout and size. */
  fullSyncSkipped: Partial<Record<LayoutName, Record<number, string>>>;
  /** One-service change: the applying transaction, ms. */
  changeApplyMs: Samples;
  /** One-service change: the reads the proxy runs on every sync, ms. */
  changeReadsMs: Samples;
  /** New connections per second. */
  rate: Samples;
  /** Connect latency of sequential connections, microseconds (one median per sample). */
  latencyP50Us: Samples;
  latencyP99Us: Samples;
  /** Failed connects per sample (any reason). */
  failedConnects: Samples;
  /** kpx's one-service change taken apart (see DeltaAnatomy), per size: one sample per field per load. */
  kpxDeltaAnatomy: Record<
    number,
    { empty: number[]; addElement: number[]; removeElement: number[]; marker: number[] }
  >;
  planCost: PlanCost[];
  /** Wall time of the whole comparison, seconds. */
  durationSeconds: number;
}

export function addSample(samples: Samples, layout: LayoutName, size: number, value: number): void {
  const bySize = samples[layout] ??= {};
  (bySize[size] ??= []).push(value);
}

export function samplesOf(samples: Samples, layout: LayoutName, size: number): number[] {
  return samples[layout]?.[size] ?? [];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
