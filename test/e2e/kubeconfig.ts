/**
 * A kubeconfig for a test API server: its URL, its CA inline
 * (certificate-authority-data) and a bearer token, as kpx's --kubeconfig reads it.
 * @module
 */
import { stringify } from "yaml";

/** What a kubeconfig needs of a server (an ApiServer has all three). */
export interface KubeconfigTarget {
  url: string;
  caPem: string;
  token: string;
}

export interface KubeconfigOptions {
  /** Another token than the server's, e.g. a wrong one. */
  token?: string;
  /** The file name inside the directory. Default "kubeconfig". */
  fileName?: string;
}

const NAME = "kpx-test";

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes));
}

/** The kubeconfig text (YAML) for `target`. */
export function kubeconfigText(target: KubeconfigTarget, options: KubeconfigOptions = {}): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: NAME,
      cluster: { server: target.url, "certificate-authority-data": base64(target.caPem) },
    }],
    users: [{ name: NAME, user: { token: options.token ?? target.token } }],
    contexts: [{ name: NAME, context: { cluster: NAME, user: NAME } }],
    "current-context": NAME,
  });
}

/** Writes the kubeconfig (mode 0600: it holds a token) into `dir`; returns its path. */
export async function writeKubeconfig(
  dir: string,
  target: KubeconfigTarget,
  options: KubeconfigOptions = {},
): Promise<string> {
  const path = `${dir}/${options.fileName ?? "kubeconfig"}`;
  await Deno.writeTextFile(path, kubeconfigText(target, options), { mode: 0o600 });
  return path;
}
