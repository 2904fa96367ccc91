import { deepEqual, throws } from "node:assert/strict";
import { parseListItems } from "./list_items.ts";

function parsed(text: string): { items: unknown[]; rest: Record<string, unknown> } {
  const items: unknown[] = [];
  const rest = parseListItems(text, (o) => items.push(o));
  return { items, rest };
}

/** What parseListItems must agree with: JSON.parse, items taken out. */
function expected(text: string): { items: unknown[]; rest: Record<string, unknown> } {
  const all = JSON.parse(text) as Record<string, unknown>;
  const items = Array.isArray(all["items"]) ? all["items"] as unknown[] : [];
  return { items, rest: Array.isArray(all["items"]) ? { ...all, items: [] } : all };
}

Deno.test("parseListItems() gives each item and the rest as JSON.parse does", () => {
  const tricky = [
    'a "quoted" name',
    "brackets ] } [ { and , : in a string",
    'a backslash \\ and \\" an escaped quote',
    "unicode \u00e9 \u{1f600} and \n newlines \t tabs",
    "",
  ];
  const docs = [
    { kind: "ServiceList", apiVersion: "v1", metadata: { resourceVersion: "7" }, items: [] },
    {
      kind: "EndpointSliceList",
      metadata: { continue: "abc", resourceVersion: "9" },
      items: tricky.map((s, i) => ({
        metadata: { name: `n${i}`, annotations: { note: s } },
        endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready: i % 2 === 0 } }],
        nested: [[1, 2, [3]], { a: { b: [] } }, null, true, false, -1.5e3],
      })),
    },
    // "items" not last, and keys that look like it inside strings and values.
    { items: [1, "two", [3], { four: 4 }, null], metadata: { "items": "x" }, 'x"items': [9] },
    { metadata: {}, other: { items: [1, 2] } },
  ];
  for (const doc of docs) {
    for (const text of [JSON.stringify(doc), JSON.stringify(doc, null, 2)]) {
      deepEqual(parsed(text), expected(text), text.slice(0, 80));
    }
  }
});

Deno.test("parseListItems() refuses what JSON.parse refuses", () => {
  for (
    const bad of [
      "",
      "[1, 2]",
      '{"items": [1 2]}',
      '{"items": [{"a": 1}, {"b": ]}',
      '{"items": ["unterminated]}',
      '{"items": []} trailing',
      '{"metadata": {"a": 1}',
      '{"items": [{"a": 1}]',
    ]
  ) {
    throws(() => parsed(bad), SyntaxError, bad);
  }
});
