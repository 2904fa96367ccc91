/**
 * An in-memory nftables that applies JSON batches the way the kernel does for
 * the commands kpx uses: the whole batch or nothing (copy, apply, swap), and
 * errors where the kernel errs (deleting what is missing, re-adding an
 * element with another value, dangling or live references, re-declaring a
 * set that rules update). Tests use it to
 * check batches and the apply logic without root; real-kernel tests check
 * that it agrees with nft.
 */

export class NftBatchError extends Error {
  override name = "NftBatchError";
  constructor(readonly index: number, reason: string) {
    super(`Cannot apply batch: command ${index}: ${reason}`);
  }
}

interface FakeSet {
  kind: "set" | "map";
  decl: string;
  elements: Map<string, string>;
  /**
   * A rule updates it from the packet path (`update @set`): nft then gives it
   * the dynamic flag, which nft 1.0.6's JSON cannot declare, so a later
   * `add set` of it differs from the kernel's and fails (File exists).
   */
  dynamic: boolean;
}

interface FakeChain {
  base: string;
  rules: string[];
}

interface FakeTable {
  chains: Map<string, FakeChain>;
  sets: Map<string, FakeSet>;
}

type Obj = Record<string, unknown>;

function declOf(o: Obj): string {
  const { family: _f, table: _t, name: _n, handle: _h, elem: _e, ...rest } = o;
  return JSON.stringify(rest);
}

/** Sets a rule's statements add to or update from the packet path. */
function updatedSets(json: string): string[] {
  return [...json.matchAll(/"op":"(?:update|add)","elem":.*?"set":"@((?:[^"\\]|\\.)*)"/g)].map((
    m,
  ) => JSON.parse(`"${m[1]}"`) as string);
}

/** Chains and sets a JSON fragment refers to ("target" verdicts, "@set" names). */
function referencesOf(json: string): { chains: string[]; sets: string[] } {
  const chains = [...json.matchAll(/"target":"((?:[^"\\]|\\.)*)"/g)].map((m) =>
    JSON.parse(`"${m[1]}"`) as string
  );
  const sets = [...json.matchAll(/"@((?:[^"\\]|\\.)*)"/g)].map((m) =>
    JSON.parse(`"${m[1]}"`) as string
  );
  return { chains, sets };
}

function cloneTable(t: FakeTable): FakeTable {
  return {
    chains: new Map([...t.chains].map(([k, c]) => [k, { base: c.base, rules: [...c.rules] }])),
    sets: new Map(
      [...t.sets].map((
        [k, s],
      ) => [k, { kind: s.kind, decl: s.decl, elements: new Map(s.elements), dynamic: s.dynamic }]),
    ),
  };
}

export class FakeNftables {
  #tables = new Map<string, FakeTable>();
  /** Batches applied successfully (for tests that count syncs). */
  applied = 0;

  /** Applies a batch atomically; throws NftBatchError and changes nothing on error. */
  apply(batch: Uint8Array | string): void {
    const text = typeof batch === "string" ? batch : new TextDecoder().decode(batch);
    const doc = JSON.parse(text) as { nftables: Obj[] };
    const work = new Map([...this.#tables].map(([k, t]) => [k, cloneTable(t)]));
    doc.nftables.forEach((cmd, i) => this.#command(work, cmd, i));
    this.#tables = work;
    this.applied++;
  }

  #command(tables: Map<string, FakeTable>, cmd: Obj, i: number): void {
    const [verb, body] = Object.entries(cmd)[0] as [string, Obj];
    const [kind, o] = Object.entries(body)[0] as [string, Obj];
    const fail = (reason: string): never => {
      throw new NftBatchError(i, `${verb} ${kind} ${o["name"] ?? o["chain"] ?? ""}: ${reason}`);
    };
    const tableName = `${o["family"]} ${kind === "table" ? o["name"] : o["table"]}`;
    if (kind === "table") {
      if (verb === "add") {
        if (!tables.has(tableName)) tables.set(tableName, { chains: new Map(), sets: new Map() });
      } else if (verb === "delete") {
        if (!tables.delete(tableName)) fail("No such file or directory");
      } else if (verb === "flush") {
        const t = tables.get(tableName) ?? fail("No such file or directory");
        for (const c of t.chains.values()) c.rules = [];
        for (const s of t.sets.values()) s.elements.clear();
      } else fail(`unsupported verb`);
      return;
    }
    const t = tables.get(tableName) ?? fail(`table ${tableName}: No such file or directory`);
    const name = String(o["name"] ?? "");
    const refersTo = (what: "chains" | "sets", target: string) => {
      for (const [cn, c] of t.chains) {
        for (const r of c.rules) if (referencesOf(r)[what].includes(target)) return `rule in ${cn}`;
      }
      if (what === "chains") {
        for (const [sn, s] of t.sets) {
          for (const v of s.elements.values()) {
            if (referencesOf(v).chains.includes(target)) return `element of ${sn}`;
          }
        }
      }
      return "";
    };
    switch (kind) {
      case "chain": {
        const c = t.chains.get(name);
        if (verb === "add") {
          const base = declOf(o);
          if (!c) t.chains.set(name, { base, rules: [] });
          else if (c.base !== base && base !== "{}") fail("exists with another definition");
        } else if (verb === "flush") {
          if (!c) fail("No such file or directory");
          c!.rules = [];
        } else if (verb === "delete") {
          if (!c) fail("No such file or directory");
          if (c!.rules.length > 0) fail("Device or resource busy (chain has rules)");
          const by = refersTo("chains", name);
          if (by) fail(`Device or resource busy (referenced by ${by})`);
          t.chains.delete(name);
        } else fail("unsupported verb");
        return;
      }
      case "set":
      case "map": {
        const s = t.sets.get(name);
        if (verb === "add") {
          const decl = declOf(o);
          if (!s) t.sets.set(name, { kind, decl, elements: new Map(), dynamic: false });
          else if (s.decl !== decl || s.kind !== kind) fail("File exists (another definition)");
          else if (s.dynamic) fail("File exists (rules update it: the kernel's set is dynamic)");
          if (Array.isArray(o["elem"])) {
            this.#addElements(t, t.sets.get(name)!, o["elem"] as unknown[], fail);
          }
        } else if (verb === "flush") {
          if (!s) fail("No such file or directory");
          s!.elements.clear();
        } else if (verb === "delete") {
          if (!s) fail("No such file or directory");
          const by = refersTo("sets", name);
          if (by) fail(`Device or resource busy (referenced by ${by})`);
          t.sets.delete(name);
        } else fail("unsupported verb");
        return;
      }
      case "element": {
        const s = t.sets.get(name) ?? fail("No such file or directory");
        const elems = o["elem"] as unknown[];
        if (verb === "add") this.#addElements(t, s, elems, fail);
        else if (verb === "delete") {
          for (const e of elems) {
            const key = JSON.stringify(Array.isArray(e) ? e[0] : e);
            if (!s.elements.delete(key)) fail(`element ${key}: No such file or directory`);
          }
        } else fail("unsupported verb");
        return;
      }
      case "rule": {
        if (verb !== "add") fail("unsupported verb");
        const chain = String(o["chain"]);
        const c = t.chains.get(chain) ?? fail(`chain ${chain}: No such file or directory`);
        const text = JSON.stringify(o["expr"]);
        const refs = referencesOf(text);
        for (const r of refs.chains) {
          if (!t.chains.has(r)) fail(`jump target ${r}: No such file or directory`);
        }
        for (const r of refs.sets) if (!t.sets.has(r)) fail(`set ${r}: No such file or directory`);
        for (const r of updatedSets(text)) t.sets.get(r)!.dynamic = true;
        c.rules.push(text);
        return;
      }
      default:
        fail("unsupported object");
    }
  }

  #addElements(t: FakeTable, s: FakeSet, elems: unknown[], fail: (r: string) => never): void {
    for (const e of elems) {
      const isPair = s.kind === "map";
      if (isPair && !Array.isArray(e)) fail("map element without a value");
      const key = JSON.stringify(isPair ? (e as unknown[])[0] : e);
      const value = isPair ? JSON.stringify((e as unknown[])[1]) : "";
      for (const r of referencesOf(value).chains) {
        if (!t.chains.has(r)) fail(`verdict target ${r}: No such file or directory`);
      }
      const old = s.elements.get(key);
      if (old !== undefined && old !== value) {
        fail(`element ${key}: File exists with another value`);
      }
      s.elements.set(key, value);
    }
  }

  hasTable(family: string, name: string): boolean {
    return this.#tables.has(`${family} ${name}`);
  }

  /** Sorted, comparable view of a table: chains with rules, sets with elements. */
  snapshot(
    family = "inet",
    name = "kpx",
  ): { chains: Record<string, string[]>; sets: Record<string, string[]> } | null {
    const t = this.#tables.get(`${family} ${name}`);
    if (!t) return null;
    const chains: Record<string, string[]> = {};
    for (const [k, c] of [...t.chains].sort()) chains[k] = [...c.rules];
    const sets: Record<string, string[]> = {};
    for (const [k, s] of [...t.sets].sort()) {
      sets[k] = [...s.elements].map(([key, v]) => v ? `${key} : ${v}` : key).sort();
    }
    return { chains, sets };
  }

  chainNames(family = "inet", name = "kpx"): string[] {
    return [...(this.#tables.get(`${family} ${name}`)?.chains.keys() ?? [])].sort();
  }

  setNames(family = "inet", name = "kpx"): string[] {
    return [...(this.#tables.get(`${family} ${name}`)?.sets.keys() ?? [])].sort();
  }
}
