/**
 * Seeded random Kubernetes objects for property tests: services of every
 * type and feature, EndpointSlices with every condition, and mutations. With
 * `malformed`, some objects are broken on purpose (bad IPs, ports, protocols,
 * wrong types, missing fields, junk values).
 */

export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.#s += 0x6d2b79f5) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

export const NODES = ["node-a", "node-b", "node-c"];
export const ZONES = ["zone-a", "zone-b"];
const PROTOCOLS = ["TCP", "TCP", "TCP", "UDP", "SCTP"];
const JUNK: unknown[] = [
  null,
  -1,
  0,
  70000,
  "x",
  "",
  [],
  {},
  true,
  1.5,
  "10.0.0.999",
  "::g",
  "None",
];

export interface GenOptions {
  services: number;
  maxEndpoints: number;
  malformed?: boolean;
  /** Let some services claim the same external IP (conflict handling). */
  conflicts?: boolean;
}

function v4(a: number, b: number, c: number, d: number) {
  return `${a}.${b}.${c}.${d}`;
}

export class ClusterGenerator {
  readonly rng: Rng;
  readonly opts: GenOptions;
  services = new Map<string, Record<string, unknown>>();
  slices = new Map<string, Record<string, unknown>>();

  constructor(seed: number, opts: GenOptions) {
    this.rng = new Rng(seed);
    this.opts = opts;
    for (let i = 0; i < opts.services; i++) this.addService(i);
  }

  #junkify(o: Record<string, unknown>): void {
    const r = this.rng;
    const spec = o["spec"] as Record<string, unknown> | undefined;
    const target = spec ?? o;
    const keys = Object.keys(target);
    const k = r.pick([...keys, "ports", "clusterIP", "type", "externalTrafficPolicy"]);
    if (k === "ports" && Array.isArray(target["ports"]) && r.chance(0.5)) {
      const ports = target["ports"] as Record<string, unknown>[];
      if (ports[0]) ports[0][r.pick(["port", "protocol", "nodePort", "name"])] = r.pick(JUNK);
    } else {
      target[k] = r.pick(JUNK);
    }
  }

  addService(i: number): string {
    const r = this.rng;
    const name = `svc-${i}`;
    const ns = r.pick(["default", "prod", "kube-system"]);
    const type = r.pick(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]);
    const dual = r.chance(0.2);
    const clusterIPs = r.chance(0.05)
      ? ["None"]
      : dual
      ? [v4(10, 96, i >> 8 & 255, i & 255), `fd00:10:96::${(i + 1).toString(16)}`]
      : [v4(10, 96, i >> 8 & 255, i & 255)];
    const nports = r.int(1, 3);
    const ports = [];
    const used = new Set<string>();
    for (let p = 0; p < nports; p++) {
      const protocol = r.pick(PROTOCOLS);
      const port = r.pick([53, 80, 443, 8080, 9090, r.int(1, 65535)]);
      if (used.has(`${protocol}/${port}`)) continue;
      used.add(`${protocol}/${port}`);
      const pp: Record<string, unknown> = { name: `p${p}`, port, protocol };
      if (type !== "ClusterIP" && r.chance(0.8)) pp["nodePort"] = 30000 + ((i * 7 + p) % 2700);
      ports.push(pp);
    }
    const spec: Record<string, unknown> = { type, clusterIPs, ports };
    if (type === "ExternalName") spec["externalName"] = "example.com";
    if (r.chance(0.2)) {
      spec["externalIPs"] = this.opts.conflicts && r.chance(0.5)
        ? ["198.51.100.1"]
        : [v4(198, 51, 100 + (i >> 8 & 3), i & 255)];
    }
    if (r.chance(0.3)) spec["externalTrafficPolicy"] = "Local";
    if (r.chance(0.15)) spec["internalTrafficPolicy"] = "Local";
    if (r.chance(0.2)) {
      spec["sessionAffinity"] = "ClientIP";
      if (r.chance(0.5)) {
        spec["sessionAffinityConfig"] = { clientIP: { timeoutSeconds: r.int(1, 86400) } };
      }
    }
    if (type === "LoadBalancer" && r.chance(0.4)) {
      spec["loadBalancerSourceRanges"] = r.chance(0.5)
        ? ["192.0.2.0/24", "198.51.100.0/25"]
        : ["203.0.113.0/24"];
    }
    const metadata: Record<string, unknown> = { name, namespace: ns };
    if (r.chance(0.05)) {
      metadata["labels"] = { "service.kubernetes.io/service-proxy-name": "other" };
    }
    const svc: Record<string, unknown> = { apiVersion: "v1", kind: "Service", metadata, spec };
    if (type === "LoadBalancer" && r.chance(0.8)) {
      const ingress: Record<string, unknown>[] = [{ ip: v4(203, 0, 113 + (i >> 8 & 1), i & 255) }];
      if (dual && r.chance(0.5)) ingress.push({ ip: `2001:db8:ffff::${(i + 1).toString(16)}` });
      if (r.chance(0.1)) ingress.push({ ip: v4(203, 0, 115, i & 255), ipMode: "Proxy" });
      svc["status"] = { loadBalancer: { ingress } };
    }
    if (this.opts.malformed && r.chance(0.15)) this.#junkify(svc);
    this.services.set(`${ns}/${name}`, svc);
    this.#slicesFor(`${ns}/${name}`, svc);
    return `${ns}/${name}`;
  }

  #endpoint(family: 4 | 6, n: number): Record<string, unknown> {
    const r = this.rng;
    const node = r.pick(NODES);
    const ni = NODES.indexOf(node);
    const addr = family === 4
      ? v4(10, 244, ni, n % 250 + 2)
      : `fd00:10:244:${ni}::${(n % 4000 + 2).toString(16)}`;
    const conditions: Record<string, unknown> = {};
    const state = r.int(0, 9);
    if (state <= 5) conditions["ready"] = true;
    else if (state === 6) conditions["ready"] = false;
    else if (state === 7) {
      Object.assign(conditions, { ready: false, serving: true, terminating: true });
    } else if (state === 8) {
      Object.assign(conditions, { ready: false, serving: false, terminating: true });
    }
    const ep: Record<string, unknown> = { addresses: [addr], nodeName: node, conditions };
    const zone = ZONES[ni % 2]!;
    ep["zone"] = zone;
    if (r.chance(0.3)) ep["hints"] = { forZones: [{ name: r.pick(ZONES) }] };
    return ep;
  }

  #slicesFor(id: string, svc: Record<string, unknown>): void {
    const r = this.rng;
    const [ns, name] = id.split("/") as [string, string];
    for (const old of [...this.slices.keys()]) {
      if (old.startsWith(`${id}-`)) this.slices.delete(old);
    }
    const spec = (svc["spec"] ?? {}) as Record<string, unknown>;
    const ports = Array.isArray(spec["ports"]) ? spec["ports"] as Record<string, unknown>[] : [];
    const nslices = r.int(0, 2);
    for (let s = 0; s < nslices; s++) {
      const family = r.chance(0.8) ? 4 : 6;
      const count = r.int(0, this.opts.maxEndpoints);
      const endpoints = [];
      for (let e = 0; e < count; e++) endpoints.push(this.#endpoint(family, r.int(0, 60)));
      const slice: Record<string, unknown> = {
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          name: `${name}-${s}`,
          namespace: ns,
          labels: { "kubernetes.io/service-name": name },
        },
        addressType: family === 4 ? "IPv4" : "IPv6",
        ports: ports.map((p) => ({
          name: p["name"],
          protocol: p["protocol"],
          port: r.chance(0.1) ? r.int(1, 65535) : 8000 + (Number(p["port"]) % 1000 || 0),
        })),
        endpoints,
      };
      if (this.opts.malformed && r.chance(0.1)) this.#junkify(slice);
      this.slices.set(`${id}-${s}`, slice);
    }
  }

  /** One random change: returns what changed, for the caller to apply to its state. */
  mutate(): { kind: "service" | "slices" | "delete"; id: string } {
    const r = this.rng;
    const ids = [...this.services.keys()];
    const roll = r.int(0, 9);
    if (roll <= 4 && ids.length > 0) {
      const id = r.pick(ids);
      this.#slicesFor(id, this.services.get(id)!);
      return { kind: "slices", id };
    }
    if (roll <= 6 && ids.length > 0) {
      const id = r.pick(ids);
      this.services.delete(id);
      for (const k of [...this.slices.keys()]) if (k.startsWith(`${id}-`)) this.slices.delete(k);
      return { kind: "delete", id };
    }
    const i = r.int(0, this.opts.services * 2);
    const before = new Set(this.services.keys());
    const id = this.addService(i);
    return { kind: before.has(id) ? "service" : "service", id };
  }

  objects(): Record<string, unknown>[] {
    return [...this.services.values(), ...this.slices.values()];
  }
}
