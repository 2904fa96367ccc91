/**
 * The Deno permissions kpx runs with when shipped: baked into `deno compile`
 * output and passed by the packaged launcher to `deno run`. One list, so the
 * two artifacts cannot drift apart. test/package_test.ts checks the lists
 * against what src/ and the bundle actually use, and runs kpx version, plan,
 * run (manifests and API server) and a real trace under them.
 *
 * Deno fixes its allow-lists when the process starts, before kpx has read
 * its flags or its config file, and `deno compile` fixes them when the
 * executable is built. So each permission is narrowed to a list where what
 * kpx needs is known then, and stays broad, for the reason given, where it
 * is only known at run time:
 * - run: exactly the tools src/ starts (ALLOWED_PROGRAMS). Child processes
 *   are not bound by Deno's permissions (nft and ipvsadm may load modules
 *   themselves; `kpx trace` starts its probe client with `ip netns exec`).
 * - env: exactly the variables kpx and its bundled dependencies read
 *   (ALLOWED_ENV); deploy/bundle.ts refuses a bundle that reads another one
 *   or enumerates the environment, since an unlisted read throws at run time.
 * - sys: the hostname (the default node name), the kernel release (IPVS
 *   mode's conn_reuse_mode depends on it) and the user id (`kpx trace` says
 *   it needs root).
 * - write: none. kpx writes no files; sysctls (conntrack table size and
 *   timeouts, IPVS mode's net.ipv4.vs.* and arp_*) are set with sysctl(8),
 *   and `ip netns add` makes trace's namespaces.
 * - read: broad. Every path kpx reads is named at run time: --config, the
 *   kubeconfig (--kubeconfig or clientConnection.kubeconfig in the config
 *   file) and the certificate and token files it names, --manifests, the
 *   PATHs of `kpx plan` and `kpx trace`, in-cluster credentials under
 *   /var/run/secrets. A path missing from a list would make kpx fail at
 *   start, or worse at a SIGHUP reload; the compiled executable could not be
 *   given another list. Listing /proc/sys would not help: Deno requires
 *   --allow-all for any path under /proc, /sys and /dev, which is why kpx
 *   reads and writes sysctls with sysctl(8) (src/apply/sysctl.ts).
 * - net: broad. kpx connects to an API server it learns at run time (the
 *   kubeconfig, --master, or KUBERNETES_SERVICE_HOST) and listens on
 *   healthzBindAddress, metricsBindAddress (both configurable) and on every
 *   LoadBalancer's healthCheckNodePort, which the API server allocates; Deno
 *   takes host[:port] lists, without port ranges.
 * - ffi: none. kpx itself needs no FFI; `kpx trace`'s probe client (libc
 *   sockets, src/trace/libc.ts) runs in its own process, which the package
 *   starts with its own permissions (src/trace/self_command.ts). The
 *   compiled dist/kpx starts itself for it, with the permissions baked in
 *   here, so `kpx trace` needs the package (or the sources): giving the
 *   daemon FFI to let trace's probe run would give it everything.
 * - no remote imports (--no-remote), no prompts.
 */

/**
 * Programs src/ starts: src/apply/ (nft, conntrack, ipvsadm, ip for
 * kube-ipvs0, sysctl) and src/trace/ (the same tools' --version, and ip,
 * which runs nft, sysctl and the probe client inside trace's namespaces).
 */
export const ALLOWED_PROGRAMS = ["nft", "conntrack", "ipvsadm", "ip", "sysctl"] as const;

/**
 * Environment variables read by kpx and what deploy/bundle.ts puts in its
 * bundle. Deno throws on reading an unlisted variable, even an unset one.
 */
export const ALLOWED_ENV = [
  // src/source/kubeconfig.ts: the in-cluster API server address.
  "KUBERNETES_SERVICE_HOST",
  "KUBERNETES_SERVICE_PORT",
  // undici (client-node's HTTP client): proxies, and how it loads its HTTP parser.
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "UNDICI_NO_WASM_SIMD",
  "UNDICI_USE_MILO",
  "JEST_WORKER_ID",
  "CI",
  // yaml: its parser's debug switches, read at every parse.
  "LOG_TOKENS",
  "LOG_STREAM",
] as const;

/** What kpx needs, as `deno run` and `deno compile` take it (see above). */
export const NARROWED_PERMISSION_FLAGS: readonly string[] = [
  `--allow-run=${ALLOWED_PROGRAMS.join(",")}`,
  `--allow-env=${ALLOWED_ENV.join(",")}`,
  "--allow-sys=hostname,osRelease,uid",
  // Broad, see above: paths and addresses named at run time.
  "--allow-read",
  "--allow-net",
  // No --allow-write (kpx writes no files), no --allow-ffi.
  "--no-prompt",
];

/** What the shipped artifacts use. */
export const PERMISSION_FLAGS: readonly string[] = NARROWED_PERMISSION_FLAGS;

/**
 * kpx's production V8 flags (the `kpx` task in deno.json repeats them):
 * - a 1 MB young generation: objects that outlive it are few (the cluster
 *   state), and a larger one is memory that short-lived garbage fills;
 * - --optimize-for-size: V8's heuristics for small devices, chiefly a heap
 *   that grows less before it collects. At 10k services x 10 endpoints the
 *   peak RSS drops from ~155 to ~143 MB following manifests and from ~228 to
 *   ~175 MB following the API (whose lists make much short-lived garbage),
 *   for ~25% more time planning a full sync (~0.35 s -> ~0.45 s) and no
 *   change in a delta's latency (docs/benchmarks.md).
 * No heap cap: a capped heap exits on a large cluster instead of growing.
 */
export const V8_FLAGS = "--max-semi-space-size=1,--optimize-for-size";
