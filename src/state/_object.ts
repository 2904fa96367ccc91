// Small readers for untyped Kubernetes objects (parsed YAML/JSON or the API
// client's objects), so validation code says what it expects.

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function obj(v: unknown): Obj {
  return isObj(v) ? v : {};
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function labels(meta: Obj): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj(meta["labels"]))) {
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** An integer in [min, max], from a number or (as YAML sometimes gives) a numeric string. */
export function intIn(v: unknown, min: number, max: number): number | undefined {
  const n = typeof v === "string" && /^-?[0-9]+$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}
