/**
 * Kubernetes manifests to objects: YAML (multi-document) or JSON, single
 * objects or List kinds, as `kubectl get ... -o yaml` writes them.
 */
import { parseAllDocuments } from "yaml";

export interface ManifestObject {
  apiVersion: string;
  kind: string;
  object: Record<string, unknown>;
  /** "file.yaml" or "file.yaml#3" (document) or "file.yaml#3/items/7". */
  origin: string;
}

/** A manifest file that cannot be read or parsed. */
export class ManifestError extends Error {
  override name = "ManifestError";
  constructor(readonly file: string, readonly reason: string, options?: ErrorOptions) {
    super(`Cannot read ${file}: ${reason}`, options);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function collect(v: unknown, origin: string, out: ManifestObject[]): void {
  if (v === null || v === undefined) return;
  if (!isObject(v)) return;
  const kind = typeof v["kind"] === "string" ? v["kind"] : "";
  const apiVersion = typeof v["apiVersion"] === "string" ? v["apiVersion"] : "";
  // "List" (kubectl) and typed lists ("ServiceList") carry their objects in items.
  if (kind.endsWith("List") && Array.isArray(v["items"])) {
    const items = v["items"] as unknown[];
    items.forEach((item, i) => {
      // Typed lists omit apiVersion/kind on the items.
      if (isObject(item) && !item["kind"] && kind !== "List") {
        item = { apiVersion, kind: kind.slice(0, -4), ...item };
      }
      collect(item, `${origin}/items/${i}`, out);
    });
    return;
  }
  out.push({ apiVersion, kind, object: v, origin });
}

/** Parses one file's text. Throws ManifestError if it is not YAML/JSON. */
export function parseManifests(text: string, file: string): ManifestObject[] {
  const out: ManifestObject[] = [];
  // JSON is YAML, but JSON.parse is several times faster and builds no
  // syntax tree: at thousands of objects that is most of the memory.
  const first = text.trimStart()[0];
  if (first === "{" || first === "[") {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new ManifestError(file, `not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    if (Array.isArray(doc)) doc.forEach((o, i) => collect(o, `${file}#${i + 1}`, out));
    else collect(doc, file, out);
    return out;
  }
  const docs = parseAllDocuments(text, { uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      throw new ManifestError(file, `document ${i + 1}: ${e.message.split("\n")[0]}`, { cause: e });
    }
    collect(doc.toJS({ maxAliasCount: 1000 }), list.length > 1 ? `${file}#${i + 1}` : file, out);
  });
  return out;
}
