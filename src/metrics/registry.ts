/**
 * A minimal Prometheus registry: counters, gauges and histograms with labels,
 * rendered in the text exposition format (version 0.0.4).
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",");
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly type: string) {}
  abstract render(): string[];
}

export class Counter extends Metric {
  #values = new Map<string, number>();
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    if (this.#values.size === 0) return [`${this.name} 0`];
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

export class Gauge extends Metric {
  #values = new Map<string, number>();
  constructor(name: string, help: string) {
    super(name, help, "gauge");
  }
  set(v: number, labels: Labels = {}): void {
    this.#values.set(labelKey(labels), v);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    if (this.#values.size === 0) return [`${this.name} 0`];
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

export class Histogram extends Metric {
  #series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, readonly bounds: number[]) {
    super(name, help, "histogram");
  }
  observe(v: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    this.bounds.forEach((b, i) => {
      if (v <= b) s!.buckets[i]!++;
    });
    s.sum += v;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.#series.get(labelKey(labels))?.count ?? 0;
  }
  render(): string[] {
    const out: string[] = [];
    const series = this.#series.size
      ? this.#series
      : new Map([["", { buckets: this.bounds.map(() => 0), sum: 0, count: 0 }]]);
    for (const [k, s] of series) {
      const lab = (extra: string) => `{${[k, extra].filter(Boolean).join(",")}}`;
      this.bounds.forEach((b, i) =>
        out.push(`${this.name}_bucket${lab(`le="${fmt(b)}"`)} ${s.buckets[i]}`)
      );
      out.push(`${this.name}_bucket${lab('le="+Inf"')} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ""} ${fmt(s.sum)}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  #metrics: Metric[] = [];
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help));
  }
  histogram(name: string, help: string, bounds: number[]): Histogram {
    return this.#add(new Histogram(name, help, bounds));
  }
  #add<T extends Metric>(m: T): T {
    if (this.#metrics.some((x) => x.name === m.name)) {
      throw new Error(`Cannot register metric ${m.name}: already registered`);
    }
    this.#metrics.push(m);
    return m;
  }
  render(): string {
    const lines: string[] = [];
    for (const m of this.#metrics) {
      lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.render());
    }
    return lines.join("\n") + "\n";
  }
}

/** Exponential buckets: start, start*factor, ... (count of them). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}
