/**
 * deploy/kpx-daemonset.yaml against the code: the ClusterRole grants exactly
 * the (API group, resource, verb) triples src/ uses, no more and no fewer,
 * and the DaemonSet runs kpx the way kpx needs (host network, one
 * capability, the config from the ConfigMap, a config kpx accepts).
 *
 * What src/ uses is read from the source, not listed here: calls of
 * client-node API methods (core.listNode(...), discovery.list...(...)) and
 * the API paths its informers list and watch ("/api/v1/services" = list +
 * watch), in any file of src/; a request by hand with a writing HTTP method
 * is flagged.
 * A method this test cannot map fails it, so a new call is never silently
 * missing from the role.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { parse } from "yaml";
import { loadConfig } from "../src/config/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MANIFEST = `${ROOT}deploy/kpx-daemonset.yaml`;

type Obj = Record<string, unknown>;
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

async function manifests(): Promise<Obj[]> {
  const text = await Deno.readTextFile(MANIFEST);
  return text.split(/^---$/m).map((d) => parse(d) as Obj | null).filter((d): d is Obj => !!d);
}

function find(docs: Obj[], kind: string): Obj {
  const d = docs.find((x) => x["kind"] === kind);
  if (!d) throw new Error(`Cannot check ${MANIFEST}: it has no ${kind}`);
  return d;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sourceFiles(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(p);
  }
  return out;
}

/** client-node method verbs -> RBAC verbs. */
const METHOD_VERBS: Record<string, string[]> = {
  list: ["list"],
  read: ["get"],
  create: ["create"],
  patch: ["patch"],
  replace: ["update"],
  delete: ["delete"],
  deleteCollection: ["deletecollection"],
};

/** client-node kinds -> [API group, resource]. */
const KINDS: Record<string, [string, string]> = {
  Service: ["", "services"],
  Node: ["", "nodes"],
  Endpoints: ["", "endpoints"],
  EndpointSlice: ["discovery.k8s.io", "endpointslices"],
  Event: ["events.k8s.io", "events"],
  Pod: ["", "pods"],
  ConfigMap: ["", "configmaps"],
  Lease: ["coordination.k8s.io", "leases"],
};

/** "group resource verb" triples src/ uses. */
async function usedPermissions(): Promise<{ used: Set<string>; unmapped: string[] }> {
  const used = new Set<string>();
  const unmapped: string[] = [];
  for (const file of await sourceFiles(`${ROOT}src`)) {
    const text = await Deno.readTextFile(file);
    // Requests by hand (fetch on an API path) count as much as client-node's.
    if (!/@kubernetes\/client-node|["'`]\/apis?\//.test(text)) continue;
    // A request that writes: kpx's role grants none; mapping one is this test's job.
    for (const m of text.matchAll(/method:\s*["'](POST|PUT|PATCH|DELETE)["']/g)) {
      unmapped.push(`${file.slice(ROOT.length)}: an HTTP ${m[1]} request`);
    }
    // API client calls: core.listServiceForAllNamespaces(, discovery.listEndpointSliceForAllNamespaces(,
    // events.createNamespacedEvent(, core.readNode(, ... (not Deno's own:
    // Deno.createHttpClient( makes no request)
    for (
      const m of text.matchAll(
        /(?<!\bDeno)\.(list|read|create|patch|replace|delete|deleteCollection)(Namespaced)?([A-Z]\w*?)(ForAllNamespaces|Status)?\(/g,
      )
    ) {
      const [, method, , kind, suffix] = m;
      const target = KINDS[kind!];
      if (!target) {
        unmapped.push(`${file.slice(ROOT.length)}: ${m[0]}`);
        continue;
      }
      const resource = suffix === "Status" ? `${target[1]}/status` : target[1];
      for (const v of METHOD_VERBS[method!]!) used.add(`${target[0]} ${resource} ${v}`);
    }
    // Informers (ListWatch / Watch) on API paths: list + watch.
    for (const m of text.matchAll(/["'`](\/apis?\/[^"'`$]+)["'`]/g)) {
      const parts = m[1]!.split("/").filter(Boolean);
      // /api/v1/<resource> or /apis/<group>/<version>/<resource>
      const [group, resource] = parts[0] === "api" ? ["", parts[2]] : [parts[1], parts[3]];
      if (!resource) {
        unmapped.push(`${file.slice(ROOT.length)}: path ${m[1]}`);
        continue;
      }
      used.add(`${group} ${resource} list`);
      used.add(`${group} ${resource} watch`);
    }
    // A client-node API client kpx's role does not know how to map.
    for (const m of text.matchAll(/k8s\.(\w+Api)\b/g)) {
      if (!["CoreV1Api", "DiscoveryV1Api"].includes(m[1]!)) {
        unmapped.push(`${file.slice(ROOT.length)}: API client ${m[1]}`);
      }
    }
  }
  return { used, unmapped };
}

function granted(rules: Rule[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of r.apiGroups) {
      for (const res of r.resources) for (const v of r.verbs) out.add(`${g} ${res} ${v}`);
    }
  }
  return out;
}

Deno.test("the ClusterRole grants exactly the API calls kpx makes", async () => {
  const { used, unmapped } = await usedPermissions();
  deepEqual(
    unmapped,
    [],
    `src/ makes API calls this test cannot map to RBAC: ${unmapped.join("; ")}; ` +
      "map them here and grant them in deploy/kpx-daemonset.yaml",
  );
  ok(used.size > 0, "found no Kubernetes API use in src/: has src/source/api.ts moved?");
  const role = find(await manifests(), "ClusterRole");
  const have = granted(role["rules"] as Rule[]);
  const missing = [...used].filter((p) => !have.has(p)).sort();
  const extra = [...have].filter((p) => !used.has(p)).sort();
  deepEqual(missing, [], `kpx uses, the ClusterRole lacks ("group resource verb"): ${missing}`);
  deepEqual(extra, [], `the ClusterRole grants what kpx never uses: ${extra}`);
  // Today: list and watch of three resources; nothing written, no events.
  deepEqual([...used].sort(), [
    " nodes list",
    " nodes watch",
    " services list",
    " services watch",
    "discovery.k8s.io endpointslices list",
    "discovery.k8s.io endpointslices watch",
  ]);
});

Deno.test("the ClusterRoleBinding gives the role to the DaemonSet's ServiceAccount", async () => {
  const docs = await manifests();
  const sa = find(docs, "ServiceAccount")["metadata"] as Obj;
  const binding = find(docs, "ClusterRoleBinding");
  const role = find(docs, "ClusterRole")["metadata"] as Obj;
  equal((binding["roleRef"] as Obj)["name"], role["name"]);
  deepEqual(binding["subjects"], [{
    kind: "ServiceAccount",
    name: sa["name"],
    namespace: sa["namespace"],
  }]);
  const spec = ((find(docs, "DaemonSet")["spec"] as Obj)["template"] as Obj)["spec"] as Obj;
  equal(spec["serviceAccountName"], sa["name"]);
});

Deno.test("the DaemonSet runs kpx on the host network with CAP_NET_ADMIN only", async () => {
  const docs = await manifests();
  const spec = ((find(docs, "DaemonSet")["spec"] as Obj)["template"] as Obj)["spec"] as Obj;
  equal(spec["hostNetwork"], true);
  const [c] = spec["containers"] as Obj[];
  const sc = c!["securityContext"] as Obj;
  equal(sc["privileged"], false);
  equal(sc["allowPrivilegeEscalation"], false);
  deepEqual(sc["capabilities"], { drop: ["ALL"], add: ["NET_ADMIN"] });
  const cmd = c!["command"] as string[];
  deepEqual(cmd.slice(0, 2), ["kpx", "run"]);
  ok(cmd.includes("--config=/etc/kpx/config.yaml"));
  // No iptables lock: kpx uses nftables only.
  ok(!JSON.stringify(spec).includes("xtables.lock"));
  // The ConfigMap holds a configuration kpx accepts, with every field implemented.
  const cm = find(docs, "ConfigMap");
  const text = (cm["data"] as Record<string, string>)["config.yaml"]!;
  const loaded = loadConfig({ file: { path: "ConfigMap kpx config.yaml", text }, flags: [] });
  deepEqual(loaded.ignored, []);
  equal(loaded.config.mode, "nftables");
  const mounts = (c!["volumeMounts"] as Obj[]).map((m) => m["mountPath"]);
  ok(mounts.includes("/etc/kpx"), "the config is mounted at /etc/kpx");
});
