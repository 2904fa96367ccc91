/**
 * The Deno permissions kpx runs with when shipped: baked into `deno compile`
 * output and passed by the packaged launcher to `deno run`. One list, so the
 * two artifacts cannot drift apart; test/package_test.ts checks the narrowed
 * list against what src/ actually runs, and that kpx plan and kpx version
 * work under it.
 *
 * What kpx needs, narrowed where the need is known in advance and broad
 * where the value is only known at run time (Deno fixes its allow-lists
 * before kpx has read its flags or its config file):
 * - run: exactly the tools src/apply/ starts. Child processes are not bound
 *   by Deno's permissions (nft and ipvsadm may load modules themselves).
 * - write: none. Sysctls (conntrack table size and timeouts; IPVS mode's
 *   net.ipv4.vs.* and arp_* settings) are set with sysctl(8).
 * - sys: the hostname (the default node name) and the kernel release (IPVS
 *   mode's conn_reuse_mode depends on it).
 * - read: broad. The kubeconfig path comes from the config file
 *   (clientConnection.kubeconfig) or --kubeconfig, the manifests directory
 *   from --manifests, in-cluster credentials from /var/run/secrets; none is
 *   known when the permissions are fixed.
 * - net: broad. kpx connects to the API server named in the kubeconfig (or
 *   by KUBERNETES_SERVICE_HOST), and listens on healthzBindAddress,
 *   metricsBindAddress and every Service's healthCheckNodePort.
 * - env: broad. client-node's `debug` dependency enumerates every variable
 *   (Object.keys(process.env)) when it loads: a list makes `kpx run`
 *   against the API server crash.
 * - none of ffi, remote imports (--no-remote), prompts.
 *
 * Deno treats every path under /proc, /sys and /dev as special (reading or
 * writing one through Deno's file API needs --allow-all), so kpx reads and
 * writes sysctls with sysctl(8) (src/apply/sysctl.ts) instead.
 */

/** Programs src/ starts (src/apply/: nft, conntrack, ipvsadm, ip for kube-ipvs0, sysctl). */
export const ALLOWED_PROGRAMS = ["nft", "conntrack", "ipvsadm", "ip", "sysctl"] as const;

/** What kpx needs, as `deno run` and `deno compile` take it (see above). */
export const NARROWED_PERMISSION_FLAGS: readonly string[] = [
  `--allow-run=${ALLOWED_PROGRAMS.join(",")}`,
  // No --allow-write: kpx writes no files (sysctls go through sysctl(8)).
  "--allow-sys=hostname,osRelease",
  "--allow-read",
  "--allow-net",
  "--allow-env",
  "--no-prompt",
];

/** What the shipped artifacts use. */
export const PERMISSION_FLAGS: readonly string[] = NARROWED_PERMISSION_FLAGS;

/**
 * kpx's production V8 default (see the `kpx` task in deno.json): a 1 MB young
 * generation, -100 MB peak RSS at 10k services at no latency cost.
 */
export const V8_FLAGS = "--max-semi-space-size=1";
