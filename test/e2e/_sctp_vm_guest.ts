/**
 * The guest side of sctp_vm_test.ts: a shell script for the test VM (see ipvs_vm.ts) that
 * builds a node's network namespaces, loads a kpx nftables batch into the node, and opens
 * real SCTP associations through it, one result line per association.
 *
 * Topology, all inside the VM (its kernel has SCTP sockets; this machine's has not):
 *
 * ```
 * ext 10.0.1.2 ──veth── node 10.0.1.1 ──veth── cpod 10.244.0.9     (client pod)
 *                        │  10.244.0.1 ──veth── ep11 10.244.0.11    (endpoints, each an SCTP
 *                        │  (each veth) ──veth── ep12 10.244.0.12     server on ENDPOINT_PORT
 *                        │             ──veth── ep13 10.244.0.13     answering its name and
 *                        └─ uplink (dummy, default route)            the peer it saw)
 * ```
 *
 * Every pod is a /32 behind its own veth, so every packet between pods crosses the node's
 * IP stack (and kpx's rules); the dummy uplink gives the node a route for addresses nothing
 * answers, so a packet kpx does not handle vanishes instead of failing routing.
 * @module
 */

/** The outside client, the node's address towards it, and the pods. */
export const EXT_IP = "10.0.1.2";
export const NODE_IP = "10.0.1.1";
export const POD_GATEWAY = "10.244.0.1";
export const CLIENT_POD = { name: "cpod", ip: "10.244.0.9" } as const;
export const ENDPOINT_PODS: readonly { name: string; ip: string }[] = [11, 12, 13].map((i) => ({
  name: `ep${i}`,
  ip: `10.244.0.${i}`,
}));
/** Where the endpoints' SCTP servers listen (the services' targetPort). */
export const ENDPOINT_PORT = 7777;

/** The client namespaces: the outside client and the client pod. */
const CLIENTS = ["ext", CLIENT_POD.name] as const;

/** Modules the run preloads (one modprobe before the script instead of one per first use). */
export const GUEST_MODULES: readonly string[] = [
  "nf_tables",
  "nf_conntrack",
  "nf_nat",
  "veth",
  "dummy",
  "sctp",
  "sctp_diag",
  "nft_chain_nat",
  "nft_ct",
  "nft_nat",
  "nft_masq",
  "nft_numgen",
  "nft_fib_inet",
  "nft_reject_inet",
];

/** One SCTP association to open: from namespace `from` to `target` ("ip:port"), `count` times. */
export interface SctpProbe {
  label: string;
  from: "ext" | "cpod";
  target: string;
  count: number;
}

/**
 * The guest script: topology, servers, `nft -j -f batch.json` in the node, then each probe,
 * printing `result <label> <exit status> <last line of socat's output>` per association and,
 * after each probe's associations, `icmp <label> <packets>`: how many ICMP port unreachables
 * (kpx's reject for SCTP) its client namespace received during them.
 *
 * The clients only read (socat -u): SCTP has no half-close, so a client that shut down its
 * sending side would end the association before the server's reply. `ip-recverr` makes an
 * ICMP error fail connect() (ECONNREFUSED for port unreachable) instead of being kept as a
 * soft error until the INIT retries run out. The first INIT's error is a soft error all the
 * same: veth delivers in the sender's own system call, so the ICMP comes back while connect()
 * still holds the socket. A short rto_initial in the clients makes the retransmitted INIT,
 * whose error does fail connect(), follow 0.2 s later instead of 3 s.
 */
export function guestScript(probes: readonly SctpProbe[]): string {
  const pods = [CLIENT_POD, ...ENDPOINT_PODS];
  const namespaces = ["ext", "node", ...pods.map((p) => p.name)];
  const lines = [
    "set -eu",
    // The VM is thrown away afterwards; the namespaces go first all the same.
    `trap 'for ns in ${namespaces.join(" ")}; do ip netns del $ns 2>/dev/null || true; done' EXIT`,
    // One ip process per namespace (ip -batch): each process start is slow under TCG.
    ...ipBatch(undefined, namespaces.map((ns) => `netns add ${ns}`)),
    ...ipBatch("ext", [
      "link set lo up",
      "link add eth0 type veth peer name to-ext netns node",
      `addr add ${EXT_IP}/24 dev eth0`,
      "link set eth0 up",
      `route add default via ${NODE_IP}`,
    ]),
    ...pods.flatMap(({ name, ip }) =>
      ipBatch(name, [
        "link set lo up",
        `link add eth0 type veth peer name veth-${name} netns node`,
        `addr add ${ip}/32 dev eth0`,
        "link set eth0 up",
        `route add ${POD_GATEWAY} dev eth0`,
        `route add default via ${POD_GATEWAY} dev eth0`,
      ])
    ),
    ...ipBatch("node", [
      "link set lo up",
      `addr add ${NODE_IP}/24 dev to-ext`,
      "link set to-ext up",
      "link add uplink type dummy",
      "link set uplink up",
      "route add default dev uplink",
      ...pods.flatMap(({ name, ip }) => [
        `addr add ${POD_GATEWAY}/32 dev veth-${name}`,
        `link set veth-${name} up`,
        `route add ${ip}/32 dev veth-${name}`,
      ]),
    ]),
    "ip netns exec node sysctl -qw net.ipv4.ip_forward=1",
    ...ENDPOINT_PODS.map(({ name }) =>
      `ip netns exec ${name} socat SCTP-LISTEN:${ENDPOINT_PORT},fork,reuseaddr ` +
      `SYSTEM:'echo "${name} saw $SOCAT_PEERADDR"' &`
    ),
    "cat > /work/probe.nft <<'EOF'",
    "table ip probe {",
    "  counter unreachable {}",
    "  chain in {",
    "    type filter hook input priority 0;",
    "    icmp type destination-unreachable icmp code port-unreachable counter name unreachable",
    "  }",
    "}",
    "EOF",
    ...CLIENTS.map((ns) =>
      `ip netns exec ${ns} sh -c 'sysctl -qw net.sctp.rto_initial=200 net.sctp.rto_min=200 && ` +
      "nft -f /work/probe.nft'"
    ),
    "ip netns exec node nft -j -f /work/batch.json",
    `for ns in ${ENDPOINT_PODS.map((p) => p.name).join(" ")}; do`,
    "  i=0",
    `  until ip netns exec $ns ss -Hln -S | grep -q ':${ENDPOINT_PORT} '; do`,
    '    i=$((i+1)); [ $i -le 200 ] || { echo "no SCTP server in $ns" >&2; exit 1; }; sleep 0.05',
    "  done",
    "done",
    // probe LABEL NS TARGET COUNT: the loop runs in the namespace (one ip netns exec).
    "probe() {",
    "  ip netns exec $2 sh -c 'for i in $(seq $3); do",
    "    rc=0",
    "    out=$(socat -u -T 5 SCTP:$2,connect-timeout=2,ip-recverr STDOUT 2>&1) || rc=$?",
    '    echo "result $1 $rc $(printf %s "$out" | tail -n 1)"',
    "  done' - $1 $3 $4",
    // nft prints the named counter's values, then zeroes them.
    '  echo "icmp $1 $(ip netns exec $2 nft reset counter ip probe unreachable | ' +
    "sed -n 's/.*packets \\([0-9]*\\).*/\\1/p')\"",
    "}",
    ...probes.map((p) => `probe ${p.label} ${p.from} ${p.target} ${p.count}`),
  ];
  return lines.join("\n") + "\n";
}

/** Shell: `ip [-n ns] -batch -` with `commands` as its input. */
function ipBatch(ns: string | undefined, commands: readonly string[]): string[] {
  return [`ip ${ns === undefined ? "" : `-n ${ns} `}-batch - <<'EOF'`, ...commands, "EOF"];
}

/** One association's outcome, from a `result` line. */
export interface SctpResult {
  label: string;
  status: number;
  /** The server's line (`<pod> saw <peer>`) or socat's last error line. */
  text: string;
}

/** The `result` lines of a run's stdout, and how many ICMP port unreachables each probe got. */
export function parseGuestOutput(stdout: string): {
  results: SctpResult[];
  icmpPortUnreachable: Map<string, number>;
} {
  const results: SctpResult[] = [];
  const icmpPortUnreachable = new Map<string, number>();
  for (const line of stdout.split("\n")) {
    const r = /^result (\S+) (\d+) ?(.*)$/.exec(line);
    if (r) results.push({ label: r[1]!, status: Number(r[2]), text: r[3]! });
    const c = /^icmp (\S+) (\d+)$/.exec(line);
    if (c) icmpPortUnreachable.set(c[1]!, Number(c[2]));
  }
  return { results, icmpPortUnreachable };
}
