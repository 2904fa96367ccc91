/**
 * Renders an nftables JSON batch as nft-style text, for people: `kpx plan`'s
 * default output and log excerpts. The JSON stays the source of truth (it is
 * what is loaded); this covers the constructs kpx emits and falls back to the
 * JSON of anything else.
 */

type J = unknown;
type O = Record<string, J>;

function isO(v: J): v is O {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function renderExpr(e: J): string {
  if (typeof e === "string") return /^[@A-Za-z0-9_.:\/*-]+$/.test(e) ? e : JSON.stringify(e);
  if (typeof e === "number") return String(e);
  if (Array.isArray(e)) return e.map(renderExpr).join(", ");
  if (!isO(e)) return JSON.stringify(e);
  const [k, v] = Object.entries(e)[0] ?? ["", null];
  const o = isO(v) ? v : {};
  switch (k) {
    case "payload":
      return `${o["protocol"]} ${o["field"]}`;
    case "meta":
      return `meta ${o["key"]}`;
    case "ct":
      return `ct ${o["dir"] ? `${o["dir"]} ` : ""}${o["key"]}`;
    case "fib":
      return `fib ${(o["flags"] as string[]).join(" . ")} ${o["result"]}`;
    case "numgen":
      return `numgen ${o["mode"]} mod ${o["mod"]}`;
    case "concat":
      return (v as J[]).map(renderExpr).join(" . ");
    case "prefix":
      return `${o["addr"]}/${o["len"]}`;
    case "set":
      return `{ ${
        (v as J[]).map((x) =>
          Array.isArray(x) ? `${renderExpr(x[0])} : ${renderStmt(x[1])}` : renderExpr(x)
        ).join(", ")
      } }`;
    case "&":
    case "|":
    case "^":
      // Marks read better in hex, as nft prints them.
      return (v as J[]).map((x) => typeof x === "number" ? `0x${x.toString(16)}` : renderExpr(x))
        .join(` ${k} `);
    case "map":
      return `${renderExpr(o["key"])} map ${renderExpr(o["data"])}`;
    case "elem":
      return renderExpr(o["val"]);
    default:
      return JSON.stringify(e);
  }
}

export function renderStmt(s: J): string {
  if (!isO(s)) return JSON.stringify(s);
  const [k, v] = Object.entries(s)[0] ?? ["", null];
  const o = isO(v) ? v : {};
  switch (k) {
    case "match": {
      const op = o["op"] === "==" || o["op"] === "in" ? "" : `${o["op"]} `;
      return `${renderExpr(o["left"])} ${op}${renderExpr(o["right"])}`;
    }
    case "vmap":
      return `${renderExpr(o["key"])} vmap ${renderExpr(o["data"])}`;
    case "jump":
    case "goto":
      return `${k} ${o["target"]}`;
    case "drop":
    case "accept":
    case "return":
      return k;
    case "reject":
      return o["type"] === "tcp reset" ? "reject with tcp reset" : "reject";
    case "dnat":
    case "snat":
      return `${k} ${o["family"] ? `${o["family"]} ` : ""}to ${renderExpr(o["addr"])}${
        o["port"] !== undefined ? ` : ${renderExpr(o["port"])}` : ""
      }`;
    case "masquerade":
      return `masquerade${o["flags"] ? ` ${[o["flags"]].flat().join(",")}` : ""}`;
    case "mangle":
      return `${renderExpr(o["key"])} set ${renderExpr(o["value"])}`;
    case "set":
      return `${o["op"]} ${o["set"]} { ${renderExpr(o["elem"])} }`;
    default:
      return JSON.stringify(s);
  }
}

function renderObject(verb: string, kind: string, o: O): string {
  const name = o["name"] ?? "";
  const where = kind === "table" ? `inet ${name}` : `inet ${o["table"]} ${name}`;
  switch (kind) {
    case "table":
      return `${verb} table ${where}`;
    case "chain": {
      if (verb !== "add" || !o["hook"]) return `${verb} chain ${where}`;
      return `${verb} chain ${where} { type ${o["type"]} hook ${o["hook"]} priority ${
        o["prio"]
      }; policy ${o["policy"]}; }`;
    }
    case "set":
    case "map": {
      if (verb !== "add") return `${verb} ${kind} ${where}`;
      const type = [o["type"]].flat().join(" . ");
      const data = o["map"] ? ` : ${[o["map"]].flat().join(" . ")}` : "";
      const flags = o["flags"] ? `; flags ${[o["flags"]].flat().join(",")}` : "";
      const timeout = o["timeout"] ? `; timeout ${o["timeout"]}s` : "";
      return `${verb} ${kind} ${where} { type ${type}${data}${flags}${timeout}; }`;
    }
    case "rule":
      return `${verb} rule inet ${o["table"]} ${o["chain"]} ${
        (o["expr"] as J[]).map(renderStmt).join(" ")
      }`;
    case "element": {
      const elems = (o["elem"] as J[]).map((e) =>
        Array.isArray(e)
          ? `${renderExpr(e[0])} : ${
            renderStmt(isO(e[1]) ? e[1] : { match: { op: "==", left: e[1], right: "" } }).replace(
              / $/,
              "",
            )
          }`
          : renderExpr(e)
      );
      return `${verb} element ${where} {\n  ${elems.join(",\n  ")}\n}`;
    }
    default:
      return `${verb} ${kind} ${JSON.stringify(o)}`;
  }
}

/** nft-style text of a batch (one command per line, elements one per line). */
export function renderBatch(batch: Uint8Array | string): string {
  const text = typeof batch === "string" ? batch : new TextDecoder().decode(batch);
  const doc = JSON.parse(text) as { nftables: O[] };
  const lines: string[] = [];
  for (const cmd of doc.nftables) {
    const [verb, body] = Object.entries(cmd)[0]!;
    if (!isO(body)) continue;
    const [kind, o] = Object.entries(body)[0]!;
    lines.push(renderObject(verb, kind, o as O));
  }
  return lines.join("\n") + "\n";
}

/** The batch as JSON with one command per line: stable, diff-friendly. */
export function formatBatchLines(batch: Uint8Array | string): string {
  const text = typeof batch === "string" ? batch : new TextDecoder().decode(batch);
  const doc = JSON.parse(text) as { nftables: O[] };
  return `{"nftables":[\n${doc.nftables.map((c) => JSON.stringify(c)).join(",\n")}\n]}\n`;
}
