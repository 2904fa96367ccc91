/**
 * Parses a Kubernetes list response one item at a time. JSON.parse of a whole
 * page (500 EndpointSlices, ~4 MB of objects) keeps every item alive until
 * the last is parsed, so they all outlive V8's young generation and become
 * old-generation garbage once handled: at 10k services, tens of megabytes of
 * peak memory during a list. Parsed one by one, each item is handled and
 * dropped while still young.
 *
 * The scanner only finds where each element of the top-level "items" array
 * begins and ends (strings and nesting are followed, nothing else is
 * interpreted); JSON.parse still parses every byte, so malformed input fails
 * as it would have.
 */

type Json = Record<string, unknown>;

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a;
const OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d, OPEN_ARRAY = 0x5b, CLOSE_ARRAY = 0x5d;

/** The index just past the string that starts at `i` (a quote). */
function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  throw new SyntaxError("Cannot parse the list: a string does not end");
}

/** The index just past the value that starts at `i` (object, array, string or scalar). */
function skipValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === QUOTE) return skipString(text, i);
  if (first !== OPEN_OBJECT && first !== OPEN_ARRAY) {
    let j = i;
    while (j < text.length) {
      const c = text.charCodeAt(j);
      if (c === COMMA || c === CLOSE_OBJECT || c === CLOSE_ARRAY) break;
      j++;
    }
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === QUOTE) {
      j = skipString(text, j) - 1;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (--depth === 0) return j + 1;
    }
  }
  throw new SyntaxError("Cannot parse the list: an object or array does not end");
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && text.charCodeAt(i) <= 0x20) i++;
  return i;
}

/**
 * Calls `onItem` with each element of the top-level "items" array, parsed on
 * its own, in order; returns the rest of the response (kind, metadata, ...)
 * with "items" empty.
 */
export function parseListItems(text: string, onItem: (item: unknown) => void): Json {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_OBJECT) {
    throw new SyntaxError("Cannot parse the list: the response is not a JSON object");
  }
  i++;
  let itemsStart = -1, itemsEnd = -1;
  for (;;) {
    i = skipSpace(text, i);
    const c = text.charCodeAt(i);
    if (c === CLOSE_OBJECT) break;
    if (c === COMMA) {
      i++;
      continue;
    }
    if (c !== QUOTE) throw new SyntaxError(`Cannot parse the list: unexpected text at ${i}`);
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) {
      throw new SyntaxError(`Cannot parse the list: no ':' after key ${key}`);
    }
    i = skipSpace(text, i + 1);
    const valueEnd = skipValue(text, i);
    if (key === "items" && text.charCodeAt(i) === OPEN_ARRAY) {
      itemsStart = i;
      itemsEnd = valueEnd;
    }
    i = valueEnd;
  }
  if (itemsStart < 0) return JSON.parse(text) as Json;
  for (let j = skipSpace(text, itemsStart + 1); j < itemsEnd - 1;) {
    const c = text.charCodeAt(j);
    if (c === COMMA) {
      j = skipSpace(text, j + 1);
      continue;
    }
    const end = skipValue(text, j);
    onItem(JSON.parse(text.slice(j, end)));
    j = skipSpace(text, end);
  }
  return JSON.parse(text.slice(0, itemsStart) + "[]" + text.slice(itemsEnd)) as Json;
}
