/**
 * A small line plot as standalone SVG (no fonts or scripts to fetch): one
 * line with markers per series, optional log axes, a legend. Enough for the
 * benchmark report's "figure against number of services" charts.
 */

export interface Series {
  name: string;
  /** Any SVG colour. */
  color: string;
  /** [x, y] points; non-finite or (on a log axis) non-positive values are skipped. */
  points: ReadonlyArray<readonly [number, number]>;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: readonly Series[];
  width?: number;
  height?: number;
}

const MARGIN = { left: 78, right: 20, top: 40, bottom: 118 };

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** Compact tick label: 30000 -> "30k", 0.5 -> "0.5". */
export function tickLabel(v: number): string {
  if (Math.abs(v) >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (Math.abs(v) >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** Ticks: powers of ten (with 2 and 5 when few) on a log axis, ~5 round steps on a linear one. */
export function ticks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    const lo = Math.floor(Math.log10(min));
    const hi = Math.ceil(Math.log10(max));
    const steps = hi - lo <= 2 ? [1, 2, 5] : [1];
    for (let e = lo; e <= hi; e++) {
      for (const m of steps) {
        const v = m * 10 ** e;
        if (v >= min * 0.999 && v <= max * 1.001) out.push(v);
      }
    }
    return out;
  }
  const span = max - min || 1;
  const raw = span / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(v);
  return out;
}

function usable(v: number, log: boolean): boolean {
  return Number.isFinite(v) && (!log || v > 0);
}

/** Renders the plot; throws RangeError when no series has a usable point. */
export function linePlot(opts: PlotOptions): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 440;
  const xLog = opts.xLog ?? false;
  const yLog = opts.yLog ?? false;
  const pts = opts.series.flatMap((s) =>
    s.points.filter(([x, y]) => usable(x, xLog) && usable(y, yLog))
  );
  if (pts.length === 0) {
    throw new RangeError(`Cannot plot "${opts.title}": no series has a usable point`);
  }
  let [xMin, xMax] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  // Linear y axes start at zero, so ratios between lines read true.
  if (!yLog) yMin = Math.min(0, yMin);
  if (xMin === xMax) [xMin, xMax] = xLog ? [xMin / 2, xMax * 2] : [xMin - 1, xMax + 1];
  if (yMin === yMax) [yMin, yMax] = yLog ? [yMin / 2, yMax * 2] : [yMin - 1, yMax + 1];
  if (yLog) [yMin, yMax] = [10 ** Math.floor(Math.log10(yMin)), 10 ** Math.ceil(Math.log10(yMax))];
  else yMax *= 1.08;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const tx = (v: number) => xLog ? Math.log10(v) : v;
  const ty = (v: number) => yLog ? Math.log10(v) : v;
  const sx = (v: number) => MARGIN.left + (tx(v) - tx(xMin)) / (tx(xMax) - tx(xMin)) * plotW;
  const sy = (v: number) => MARGIN.top + plotH - (ty(v) - ty(yMin)) / (ty(yMax) - ty(yMin)) * plotH;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${
      escapeXml(opts.title)
    }</text>`,
  ];
  for (const v of ticks(yMin, yMax, yLog)) {
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${f(sy(v))}" y2="${
        f(sy(v))
      }" stroke="#e4e4e4"/>`,
      `<text x="${MARGIN.left - 6}" y="${f(sy(v) + 4)}" text-anchor="end">${tickLabel(v)}</text>`,
    );
  }
  for (const v of ticks(xMin, xMax, xLog)) {
    out.push(
      `<line x1="${f(sx(v))}" x2="${f(sx(v))}" y1="${MARGIN.top}" y2="${
        MARGIN.top + plotH
      }" stroke="#e4e4e4"/>`,
      `<text x="${f(sx(v))}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${
        tickLabel(v)
      }</text>`,
    );
  }
  out.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH + 36}" text-anchor="middle">${
      escapeXml(opts.xLabel)
    }</text>`,
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      escapeXml(opts.yLabel)
    }</text>`,
  );
  opts.series.forEach((s, i) => {
    const p = s.points.filter(([x, y]) => usable(x, xLog) && usable(y, yLog))
      .map(([x, y]) => [sx(x), sy(y)] as const);
    if (p.length > 1) {
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${
          p.map(([x, y]) => `${f(x)},${f(y)}`).join(" ")
        }"/>`,
      );
    }
    for (const [x, y] of p) {
      out.push(`<circle cx="${f(x)}" cy="${f(y)}" r="3.5" fill="${s.color}"/>`);
    }
    // Legend below the x axis label, two entries per row.
    const lx = MARGIN.left + (i % 2) * (plotW / 2);
    const ly = MARGIN.top + plotH + 60 + Math.floor(i / 2) * 20;
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${
        ly - 4
      }" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${lx + 30}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
