/**
 * The Kubernetes API as a source: list+watch (client-node informers) of
 * Services, EndpointSlices and this Node. Only this module imports
 * client-node, and Kubernetes objects leave it as plain JSON.
 *
 * client-node's ListWatch relists by itself after 410 Gone and resumes a
 * dropped watch from the last resourceVersion, but stops on any other error:
 * this source restarts it with exponential backoff (1 s doubling to 30 s). It
 * does not ask for bookmarks, so the watch client handed to it adds
 * allowWatchBookmarks (bookmarks keep the resourceVersion fresh, so a
 * reconnect rarely needs a relist). Objects are slimmed to the fields kpx
 * reads before the informer caches them: at 10k services that is most of the
 * memory.
 */
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../log/mod.ts";
import type { SourceHandlers, SourceKind } from "./manifest_dir.ts";

/** kube-proxy's selectors: services of another proxy, and headless services' slices, are not ours. */
export const SERVICE_SELECTOR = "!service.kubernetes.io/service-proxy-name";
export const SLICE_SELECTOR =
  "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
const PAGE_SIZE = 500;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

type Json = Record<string, unknown>;

function pick(o: unknown, keys: readonly string[]): Json | undefined {
  if (typeof o !== "object" || o === null) return undefined;
  const out: Json = {};
  for (const k of keys) {
    const v = (o as Json)[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  return out;
}

const TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time";

function slimMeta(m: unknown): Json {
  const meta = pick(m, ["name", "namespace", "resourceVersion", "labels", "deletionTimestamp"]) ??
    {};
  const ann = (m as Json | undefined)?.["annotations"] as Json | undefined;
  if (ann?.[TRIGGER_TIME]) meta["annotations"] = { [TRIGGER_TIME]: ann[TRIGGER_TIME] };
  return meta;
}

/** Only what src/state reads; the rest (managedFields, targetRefs, ...) is dropped. */
export function slim(kind: SourceKind, o: unknown): Json {
  const src = o as Json;
  const out: Json = { metadata: slimMeta(src["metadata"]) };
  if (kind === "Service") {
    out["spec"] = pick(src["spec"], [
      "type",
      "clusterIP",
      "clusterIPs",
      "externalIPs",
      "ports",
      "externalTrafficPolicy",
      "internalTrafficPolicy",
      "sessionAffinity",
      "sessionAffinityConfig",
      "loadBalancerSourceRanges",
      "healthCheckNodePort",
    ]);
    const lb = ((src["status"] as Json | undefined)?.["loadBalancer"] as Json | undefined)
      ?.["ingress"];
    if (Array.isArray(lb)) {
      out["status"] = { loadBalancer: { ingress: lb.map((i) => pick(i, ["ip", "ipMode"])) } };
    }
  } else if (kind === "EndpointSlice") {
    out["addressType"] = src["addressType"];
    out["ports"] = src["ports"];
    out["endpoints"] = Array.isArray(src["endpoints"])
      ? (src["endpoints"] as unknown[]).map((e) =>
        pick(e, ["addresses", "conditions", "nodeName", "zone", "hints"])
      )
      : [];
  } else {
    out["spec"] = pick(src["spec"], ["podCIDR", "podCIDRs", "taints"]);
    const addrs = (src["status"] as Json | undefined)?.["addresses"];
    out["status"] = { addresses: Array.isArray(addrs) ? addrs : [] };
  }
  return out;
}

/** client-node's typed objects carry Dates and class instances; the state wants JSON. */
function toJSON(o: unknown): Json {
  return JSON.parse(JSON.stringify(o)) as Json;
}

export interface ApiSourceOptions {
  kubeconfig?: string;
  /** Overrides the API server address of the kubeconfig (kube-proxy's --master). */
  master?: string;
  nodeName: string;
  log: Logger;
  handlers: SourceHandlers;
}

interface Resource {
  kind: SourceKind;
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  list: (
    cont: string | undefined,
  ) => Promise<{ items: unknown[]; metadata?: { resourceVersion?: string; _continue?: string } }>;
}

export function loadKubeConfig(opts: { kubeconfig?: string; master?: string }): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromCluster();
  } catch (e) {
    throw new Error(
      `Cannot load the kubeconfig${opts.kubeconfig ? ` ${opts.kubeconfig}` : " (in-cluster)"}: ${
        (e as Error).message
      }`,
      { cause: e },
    );
  }
  if (opts.master) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("Cannot use --master: the kubeconfig has no current cluster");
    kc.clusters = kc.clusters.map((c) =>
      c.name === cluster.name ? { ...c, server: opts.master! } : c
    );
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(
      `Cannot use the kubeconfig${
        opts.kubeconfig ? ` ${opts.kubeconfig}` : ""
      }: no current cluster`,
    );
  }
  return kc;
}

interface InformerEntry {
  res: Resource;
  lw: k8s.ListWatch<k8s.KubernetesObject>;
  synced: boolean;
  backoff: number;
  timer?: ReturnType<typeof setTimeout>;
}

export class ApiSource {
  #opts: ApiSourceOptions;
  #informers: InformerEntry[] = [];
  #stopped = false;
  #synced = false;

  constructor(opts: ApiSourceOptions) {
    this.#opts = opts;
  }

  get synced(): boolean {
    return this.#synced;
  }

  start(): Promise<void> {
    const kc = loadKubeConfig(this.#opts);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    const realWatch = new k8s.Watch(kc);
    const resources: Resource[] = [
      {
        kind: "Service",
        path: "/api/v1/services",
        labelSelector: SERVICE_SELECTOR,
        list: (cont) =>
          core.listServiceForAllNamespaces({
            labelSelector: SERVICE_SELECTOR,
            limit: PAGE_SIZE,
            ...(cont ? { _continue: cont } : {}),
          }),
      },
      {
        kind: "EndpointSlice",
        path: "/apis/discovery.k8s.io/v1/endpointslices",
        labelSelector: SLICE_SELECTOR,
        list: (cont) =>
          discovery.listEndpointSliceForAllNamespaces({
            labelSelector: SLICE_SELECTOR,
            limit: PAGE_SIZE,
            ...(cont ? { _continue: cont } : {}),
          }),
      },
      {
        kind: "Node",
        path: "/api/v1/nodes",
        fieldSelector: `metadata.name=${this.#opts.nodeName}`,
        list: (cont) =>
          core.listNode({
            fieldSelector: `metadata.name=${this.#opts.nodeName}`,
            limit: PAGE_SIZE,
            ...(cont ? { _continue: cont } : {}),
          }),
      },
    ];
    for (const res of resources) {
      const entry = { res, synced: false, backoff: BACKOFF_START_MS } as InformerEntry;
      // The watch client ListWatch uses: asks for bookmarks and slims objects.
      const watch = {
        watch: (
          path: string,
          query: Record<string, unknown>,
          cb: (phase: string, o: unknown, w: unknown) => void,
          done: (err: unknown) => void,
        ) =>
          realWatch.watch(
            path,
            { ...query, allowWatchBookmarks: true },
            (phase: string, o: unknown, w: unknown) => {
              if (phase === "BOOKMARK" || phase === "ERROR") cb(phase, o, w);
              else cb(phase, slim(res.kind, o), w);
            },
            done,
          ),
      } as unknown as k8s.Watch;
      const listFn = async () => {
        // Paginated: one page in memory at a time, slimmed before keeping it.
        const items: Json[] = [];
        let cont: string | undefined;
        let rv = "";
        do {
          const page = await res.list(cont);
          for (const it of page.items) items.push(slim(res.kind, toJSON(it)));
          rv ||= page.metadata?.resourceVersion ?? "";
          cont = page.metadata?._continue || undefined;
        } while (cont);
        this.#listed(entry);
        return {
          apiVersion: "v1",
          kind: "List",
          items,
          metadata: { resourceVersion: rv },
        } as unknown as k8s.KubernetesListObject<k8s.KubernetesObject>;
      };
      const lw = new k8s.ListWatch<k8s.KubernetesObject>(
        res.path,
        watch,
        listFn,
        false,
        res.labelSelector,
        res.fieldSelector,
      );
      entry.lw = lw;
      lw.on("add", (o) => this.#opts.handlers.event(res.kind, "upsert", o as unknown as Json));
      lw.on("update", (o) => this.#opts.handlers.event(res.kind, "upsert", o as unknown as Json));
      lw.on("delete", (o) => this.#opts.handlers.event(res.kind, "delete", o as unknown as Json));
      lw.on("connect", () => {
        entry.backoff = BACKOFF_START_MS;
      });
      lw.on("error", (err) => this.#failed(entry, err));
      this.#informers.push(entry);
    }
    for (const e of this.#informers) this.#start(e);
    return Promise.resolve();
  }

  #start(e: InformerEntry): void {
    if (this.#stopped) return;
    e.lw.start().catch((err) => this.#failed(e, err));
  }

  #listed(e: InformerEntry): void {
    if (e.synced) return;
    e.synced = true;
    this.#opts.log.info("Listed", { resource: e.res.kind }, 2);
    if (!this.#synced && this.#informers.every((i) => i.synced)) {
      this.#synced = true;
      this.#opts.handlers.synced();
    }
  }

  #failed(e: InformerEntry, err: unknown): void {
    if (this.#stopped) return;
    const error = err instanceof Error
      ? err
      : new Error(String((err as { message?: string })?.message ?? err));
    this.#opts.handlers.error(
      new Error(
        `Cannot watch ${e.res.kind}s (retrying in ${e.backoff / 1000} s): ${error.message}`,
        { cause: err },
      ),
    );
    clearTimeout(e.timer);
    e.timer = setTimeout(() => this.#start(e), e.backoff);
    e.backoff = Math.min(e.backoff * 2, BACKOFF_MAX_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const e of this.#informers) {
      clearTimeout(e.timer);
      await e.lw.stop();
    }
  }
}
