/**
 * A map from a key to a few strings, usually one: the services claiming a
 * destination, the slices of a service. One string is kept as itself and
 * several as a sorted array, instead of a Set per key: at 10k services a
 * Set each is megabytes of hash tables holding one entry.
 */
export class OwnersMap {
  #map = new Map<string, string | string[]>();

  /** The owners of `key`, sorted (a new array). */
  get(key: string): string[] {
    const v = this.#map.get(key);
    return v === undefined ? [] : typeof v === "string" ? [v] : [...v];
  }

  /** The lexically first owner of `key`, if any. */
  first(key: string): string | undefined {
    const v = this.#map.get(key);
    return typeof v === "string" ? v : v?.[0];
  }

  add(key: string, owner: string): void {
    const v = this.#map.get(key);
    if (v === undefined) {
      this.#map.set(key, owner);
    } else if (typeof v === "string") {
      if (v !== owner) this.#map.set(key, v < owner ? [v, owner] : [owner, v]);
    } else if (!v.includes(owner)) {
      v.push(owner);
      v.sort();
    }
  }

  remove(key: string, owner: string): void {
    const v = this.#map.get(key);
    if (v === undefined) return;
    if (typeof v === "string") {
      if (v === owner) this.#map.delete(key);
      return;
    }
    const rest = v.filter((o) => o !== owner);
    this.#map.set(key, rest.length === 1 ? rest[0]! : rest);
  }
}
