/**
 * Where the API server is and how to authenticate: a kubeconfig file
 * (--kubeconfig, with --master overriding its server) or the in-cluster
 * service account. Supported: bearer tokens (inline or a token file, re-read
 * so rotated service-account tokens keep working), client certificates,
 * certificate authorities, insecure-skip-tls-verify. Not supported: exec and
 * auth-provider plugins and basic auth — they are refused with a message.
 * (client-node's KubeConfig supports them, but loads its whole generated API
 * client with it: ~50 MB of memory on every node.)
 */
import { parse as parseYAML } from "yaml";

export interface ApiEndpoint {
  /** https://host:port */
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  insecure: boolean;
  /** The bearer token to send now, if any. */
  token(): Promise<string | undefined>;
  /** For messages: where this came from. */
  origin: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

type Obj = Record<string, unknown>;

function named(list: unknown, name: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined;
  const hit = list.find((e) => (e as Obj)?.["name"] === name) as Obj | undefined;
  return hit;
}

function fromBase64(s: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
}

async function readText(path: string, what: string, origin: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read the ${what} of ${origin} (${path}): ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** A file whose contents can change (a projected token): re-read at most every minute. */
function rereading(path: string, origin: string): () => Promise<string> {
  let value = "";
  let readAt = -Infinity;
  return async () => {
    if (Date.now() - readAt > 60_000) {
      value = (await readText(path, "token file", origin)).trim();
      readAt = Date.now();
    }
    return value;
  };
}

export async function loadKubeconfigFile(path: string, master?: string): Promise<ApiEndpoint> {
  const origin = `kubeconfig ${path}`;
  let doc: Obj;
  try {
    doc = (parseYAML(await readText(path, "contents", origin)) ?? {}) as Obj;
  } catch (e) {
    if ((e as Error).message.startsWith("Cannot read")) throw e;
    throw new Error(`Cannot use ${origin}: not valid YAML: ${(e as Error).message}`, { cause: e });
  }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "./";
  const resolve = (p: string) => p.startsWith("/") ? p : dir + p;
  const ctxName = String(doc["current-context"] ?? "");
  const ctx = named(doc["contexts"], ctxName)?.["context"] as Obj | undefined;
  if (!ctx) {
    throw new Error(
      `Cannot use ${origin}: no current context${ctxName ? ` (${ctxName} is not defined)` : ""}`,
    );
  }
  const cluster = named(doc["clusters"], String(ctx["cluster"] ?? ""))?.["cluster"] as
    | Obj
    | undefined;
  if (!cluster) {
    throw new Error(`Cannot use ${origin}: context ${ctxName} names no defined cluster`);
  }
  const user = (named(doc["users"], String(ctx["user"] ?? ""))?.["user"] ?? {}) as Obj;
  for (const unsupported of ["exec", "auth-provider", "username", "password"]) {
    if (user[unsupported]) {
      throw new Error(
        `Cannot use ${origin}: the user of context ${ctxName} authenticates with ${unsupported}, which kpx does not support; use a token, a token file or a client certificate`,
      );
    }
  }
  const pem = async (dataKey: string, fileKey: string, what: string) => {
    if (typeof cluster[dataKey] === "string") return fromBase64(cluster[dataKey] as string);
    if (typeof user[dataKey] === "string") return fromBase64(user[dataKey] as string);
    const file = (cluster[fileKey] ?? user[fileKey]) as string | undefined;
    return file ? await readText(resolve(file), what, origin) : undefined;
  };
  const server = master || String(cluster["server"] ?? "");
  if (!/^https?:\/\//.test(server)) {
    throw new Error(
      `Cannot use ${origin}: cluster server ${JSON.stringify(server)} is not an http(s) URL`,
    );
  }
  const token = typeof user["token"] === "string" ? user["token"] as string : undefined;
  const tokenFile = typeof user["tokenFile"] === "string"
    ? rereading(resolve(user["tokenFile"] as string), origin)
    : undefined;
  const endpoint: ApiEndpoint = {
    server,
    insecure: cluster["insecure-skip-tls-verify"] === true,
    token: () =>
      token !== undefined
        ? Promise.resolve(token)
        : tokenFile
        ? tokenFile()
        : Promise.resolve(undefined),
    origin,
  };
  const ca = await pem(
    "certificate-authority-data",
    "certificate-authority",
    "certificate authority",
  );
  const cert = await pem("client-certificate-data", "client-certificate", "client certificate");
  const key = await pem("client-key-data", "client-key", "client key");
  if (ca) endpoint.ca = ca;
  if (cert) endpoint.cert = cert;
  if (key) endpoint.key = key;
  return endpoint;
}

export async function loadInCluster(master?: string): Promise<ApiEndpoint> {
  const host = Deno.env.get("KUBERNETES_SERVICE_HOST");
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT");
  if (!master && (!host || !port)) {
    throw new Error(
      "Cannot find the API server: not in a cluster (KUBERNETES_SERVICE_HOST is not set) and no --kubeconfig or --master given",
    );
  }
  const origin = "the in-cluster service account";
  const server = master || `https://${host!.includes(":") ? `[${host}]` : host}:${port}`;
  if (master && !(await Deno.stat(SA_DIR).then(() => true, () => false))) {
    // --master alone, outside a cluster: kube-proxy then talks to it unauthenticated.
    return {
      server,
      insecure: false,
      token: () => Promise.resolve(undefined),
      origin: `--master ${master}`,
    };
  }
  return {
    server,
    ca: await readText(`${SA_DIR}/ca.crt`, "certificate authority", origin),
    insecure: false,
    token: rereading(`${SA_DIR}/token`, origin),
    origin,
  };
}

export function loadApiEndpoint(
  opts: { kubeconfig?: string; master?: string },
): Promise<ApiEndpoint> {
  return opts.kubeconfig
    ? loadKubeconfigFile(opts.kubeconfig, opts.master)
    : loadInCluster(opts.master);
}
