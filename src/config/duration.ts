/** Go-style durations ("30s", "1m0s", "1h2m3.5s", "500ms"), as KubeProxyConfiguration writes them. */

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60000,
  h: 3600000,
};

/** Milliseconds, or null if the text is not a duration. */
export function parseDuration(text: string): number | null {
  if (typeof text !== "string") return null;
  const t = text.trim();
  if (t === "0") return 0;
  const re = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  return matched === t.length && matched > 0 ? total : null;
}

export function formatDuration(ms: number): string {
  if (ms % 3600000 === 0 && ms > 0) return `${ms / 3600000}h`;
  if (ms % 60000 === 0 && ms > 0) return `${ms / 60000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
