/** For tests: read one sample from Prometheus text, as a scraper would. */

/** The value of `series` (e.g. `name{label="v"}`, or `name_count`) in text, if present. */
export function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    const i = line.lastIndexOf(" ");
    if (i > 0 && line.slice(0, i) === series) return Number(line.slice(i + 1));
  }
  return undefined;
}
