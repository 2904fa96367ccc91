/**
 * Label and field selectors as the API server parses them: `key`, `!key`,
 * `key=value` (`==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`,
 * comma-joined (all must hold). Field selectors support `metadata.name` and
 * `metadata.namespace` with `=`, `==`, `!=` — what a kube-proxy asks for.
 * @module
 */
import type { KubeObject } from "./_api_types.ts";

/** A malformed selector: the server answers 400 BadRequest with this message. */
export class SelectorError extends Error {
  override name = "SelectorError";
}

type Requirement =
  | { op: "exists" | "absent"; key: string }
  | { op: "in" | "notin"; key: string; values: string[] };

/** A parsed selector: true for an object every requirement holds for. */
export type Selector = (object: KubeObject) => boolean;

const KEY =
  /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$/;

/** Splits at top-level commas, keeping `in (a,b)` lists whole. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms.map((t) => t.trim()).filter((t) => t !== "");
}

function checkKey(key: string, term: string): string {
  if (!KEY.test(key)) throw new SelectorError(`invalid label key "${key}" in "${term}"`);
  return key;
}

function checkValue(value: string, term: string): string {
  if (!VALUE.test(value) || value.length > 63) {
    throw new SelectorError(`invalid label value "${value}" in "${term}"`);
  }
  return value;
}

function parseTerm(term: string): Requirement {
  const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(term);
  if (set) {
    const values = (set[3] ?? "").split(",").map((v) => checkValue(v.trim(), term));
    return { op: set[2] as "in" | "notin", key: checkKey(set[1] ?? "", term), values };
  }
  if (term.startsWith("!")) return { op: "absent", key: checkKey(term.slice(1).trim(), term) };
  const eq = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(term);
  if (eq) {
    const key = checkKey(eq[1] ?? "", term);
    const values = [checkValue((eq[3] ?? "").trim(), term)];
    return { op: eq[2] === "!=" ? "notin" : "in", key, values };
  }
  return { op: "exists", key: checkKey(term, term) };
}

function holds(req: Requirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, req.key);
  switch (req.op) {
    case "exists":
      return has;
    case "absent":
      return !has;
    case "in":
      return has && req.values.includes(labels[req.key] ?? "");
    case "notin":
      // As in k8s.io/apimachinery: `key!=value` also matches objects without the key.
      return !has || !req.values.includes(labels[req.key] ?? "");
  }
}

/** Parses a labelSelector query value; an empty or absent one selects everything. */
export function parseLabelSelector(selector: string | null): Selector {
  const reqs = splitTerms(selector ?? "").map(parseTerm);
  return (o) => reqs.every((r) => holds(r, o.metadata.labels ?? {}));
}

const FIELDS: Readonly<Record<string, (o: KubeObject) => string>> = {
  "metadata.name": (o) => o.metadata.name,
  "metadata.namespace": (o) => o.metadata.namespace ?? "",
};

/** Parses a fieldSelector query value (metadata.name, metadata.namespace). */
export function parseFieldSelector(selector: string | null): Selector {
  const reqs = splitTerms(selector ?? "").map((term) => {
    const m = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(term);
    const field = FIELDS[m?.[1] ?? ""];
    if (!m || !field) {
      throw new SelectorError(`field label not supported or malformed: "${term}"`);
    }
    const value = (m[3] ?? "").trim();
    const negate = m[2] === "!=";
    return (o: KubeObject) => (field(o) === value) !== negate;
  });
  return (o) => reqs.every((r) => r(o));
}
