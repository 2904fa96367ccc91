#!/usr/bin/env bash
# Installs the Debian packages kpx's tests, demo and benchmarks need, if
# missing. Run by `deno task test`, `deno task demo` and `deno task bench`,
# so the README's commands work on a fresh Debian machine. Needs root for
# apt-get; without it, it lists what is missing and the kernel tests say
# what they skip (or fail, under CI=true).
set -euo pipefail

packages=(
  nftables        # nft: kpx loads its rules with it
  iproute2        # ip netns / veth: the test topologies
  conntrack       # UDP conntrack cleanup, and tests reading conntrack
  procps          # sysctl
  socat           # SCTP traffic inside the IPVS test VM
  ipvsadm         # IPVS mode
  qemu-system-x86 # boots Debian's kernel (IPVS, SCTP) for tests
  busybox-static  # the test VM's userland
  kmod            # modprobe in the test VM
  xz-utils        # unpacks the test VM's kernel
  iptables        # kube-proxy's iptables layouts in the benchmark comparison
  debootstrap     # a minimal Debian root for the packaging tests
  systemd         # systemd-analyze verify/security on the unit
  systemd-container # systemd-nspawn: boots the install test's Debian root
  shellcheck      # install.sh lint
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test/setup.sh: missing Debian packages (install as root): ${missing[*]}" >&2
  exit 0
fi
echo "test/setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
