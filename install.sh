#!/usr/bin/env bash
# install.sh: installs kpx on this node, with no network.
#
#   ./install.sh [options] [ARTIFACT]    install or update
#   ./install.sh --uninstall [options]   remove
#
# ARTIFACT is the kpx executable: the single-file package
# (kpx-<version>-linux-<arch>, from `deno task package`) or a `deno compile`
# build (dist/kpx). Default: the one beside this script (or in its dist/).
#
# Options:
#   --root DIR     install into DIR instead of / (also: KPX_INSTALL_ROOT).
#                  DIR is not the running system: nothing is started or
#                  stopped, and the kernel and kube-proxy checks are skipped.
#   --bindir DIR   where the binary goes (default /usr/local/bin)
#   --dry-run      print what would be done, change nothing
#   --force        install although a check failed (kube-proxy active, no nft)
#   --no-start     install and enable the service, do not start it
#   --uninstall    stop kpx, remove its rules (kpx cleanup) and what install.sh
#                  installed; a config file changed since is kept
#   -h, --help
#
# What it installs: the binary, /etc/kpx/config.yaml (a KubeProxyConfiguration;
# an existing one is never replaced), /etc/systemd/system/kpx.service (where
# systemd is), enabled; started where systemd runs and kpx has a source of
# Services (a kubeconfig, or KPX_ARGS=--manifests DIR in /etc/kpx/kpx.env).
# It records what it installed in /var/lib/kpx/install.manifest. Running it
# again with the same artifact changes nothing.
set -euo pipefail
# `producer | write_file ...` runs write_file in this shell, so what it
# records (changed=1) is not lost in a subshell.
shopt -s lastpipe

prog=install.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

root=${KPX_INSTALL_ROOT:-/}
bindir=/usr/local/bin
dry_run=0
force=0
start=1
uninstall=0
artifact=

say() { printf '%s: %s\n' "$prog" "$*"; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() {
  printf '%s: %s\n' "$prog" "$*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --root) root=${2:?--root needs a directory}; shift ;;
    --root=*) root=${1#*=} ;;
    --bindir) bindir=${2:?--bindir needs a directory}; shift ;;
    --bindir=*) bindir=${1#*=} ;;
    --dry-run) dry_run=1 ;;
    --force) force=1 ;;
    --no-start) start=0 ;;
    --uninstall) uninstall=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "Cannot parse arguments: unknown option $1" ;;
    *)
      [ -z "$artifact" ] || die "Cannot parse arguments: more than one artifact ($artifact, $1)"
      artifact=$1
      ;;
  esac
  shift
done

case $bindir in /*) ;; *) die "Cannot use --bindir $bindir: not an absolute path" ;; esac
# The root without its trailing slash: "" is the running system.
root=${root%/}
if [ -n "$root" ]; then
  [ -d "$root" ] || die "Cannot install into --root $root: not a directory"
  root=$(cd "$root" && pwd)
  [ "$root" != / ] || root=
fi
live=0
[ -n "$root" ] || live=1

# Paths, as seen on the node; "$root$path" is where they are written.
bin=$bindir/kpx
conf_dir=/etc/kpx
conf=$conf_dir/config.yaml
env_file=$conf_dir/kpx.env
kubeconfig=$conf_dir/kubeconfig
unit_dir=/etc/systemd/system
unit=$unit_dir/kpx.service
wants=$unit_dir/multi-user.target.wants/kpx.service
state_dir=/var/lib/kpx
manifest=$state_dir/install.manifest
cache_dir=/var/cache/kpx

if [ "$(id -u)" -ne 0 ] && [ "$dry_run" -eq 0 ]; then
  if [ -z "$root" ] || [ ! -w "$root" ]; then
    die "Cannot install kpx: run as root (or use --dry-run to see the plan)"
  fi
fi

# Does the running system run systemd (sd_booted(3): /run/systemd/system)?
systemd_running() { [ "$live" -eq 1 ] && [ -d /run/systemd/system ]; }
# Is there systemd in the target at all (for installing the unit)?
has_systemd() { [ -x "$root/lib/systemd/systemd" ] || [ -x "$root/usr/lib/systemd/systemd" ]; }

# Changes go through these two, so --dry-run can say what it would do.
changed=0
act() {
  # act DESCRIPTION COMMAND...: run (or, dry, print) one change.
  local what=$1
  shift
  changed=1
  if [ "$dry_run" -eq 1 ]; then
    say "would $what"
  else
    say "$what"
    "$@"
  fi
}
unchanged() { say "$* (unchanged)"; }

# write_file PATH MODE: stdin to "$root$PATH" atomically, if it differs.
write_file() {
  local path=$1 mode=$2 dest=$root$1 tmp
  tmp=$(mktemp "${TMPDIR:-/tmp}/kpx-install.XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" &&
    [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    rm -f "$tmp"
    unchanged "$path"
    return 0
  fi
  local verb=install
  [ -e "$dest" ] && verb=update
  act "$verb $path" install_file "$tmp" "$dest" "$mode"
  rm -f "$tmp"
}
install_file() {
  # Copied beside the destination, then renamed: never half a file, and a
  # running kpx keeps its (old) binary.
  local src=$1 dest=$2 mode=$3
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest.kpx-new"
  chmod "$mode" "$dest.kpx-new"
  mv -f "$dest.kpx-new" "$dest"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
link() {
  # link TARGET LINK: a symlink, its directory made first.
  mkdir -p "$(dirname "$2")"
  ln -s "$1" "$2"
}

# The unit, kept byte-identical to systemd/kpx.service (test/install_test.ts
# checks), so that install.sh and the artifact are all a node needs.
unit_text() {
  cat <<'UNIT'
# kpx, the Kubernetes node proxy (a kube-proxy replacement), as a system service.
# Installed by install.sh, which rewrites ExecStart's path if it installs kpx
# elsewhere than /usr/local/bin. Put local changes in a drop-in
# (systemctl edit kpx): install.sh replaces this file, never a drop-in.
#
# Flags beyond the config file go in /etc/kpx/kpx.env, e.g. for a node that
# follows a directory of manifests instead of the Kubernetes API:
#   KPX_ARGS=--manifests /etc/kpx/manifests
#
# Hardening: every option below was tested with kpx syncing rules under it
# (test/install_test.ts boots this unit in a container). Exposure score
# (systemd-analyze security): 1.8, see docs/install.md.

[Unit]
Description=kpx Kubernetes node proxy
Wants=network-online.target
After=network-online.target
# Two proxies programming one node fight; starting kpx stops kube-proxy.
Conflicts=kube-proxy.service
# A node proxy keeps trying: no start rate limit (RestartSec= spaces retries).
StartLimitIntervalSec=0

[Service]
Type=exec
Environment=KPX_ARGS=
EnvironmentFile=-/etc/kpx/kpx.env
ExecStart=/usr/local/bin/kpx run --config /etc/kpx/config.yaml $KPX_ARGS
# SIGHUP re-reads --config (kpx run). sh's kill: minimal nodes lack procps'
# /bin/kill. systemd substitutes $MAINPID before sh sees it.
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
Restart=on-failure
RestartSec=5s
# SIGTERM: kpx stops watching and leaves its rules in place (traffic keeps
# flowing while it is down); `kpx cleanup` removes them.
TimeoutStopSec=30s

# The packaged kpx unpacks itself into $CACHE_DIRECTORY (/var/cache/kpx) on
# its first start: the only place it writes, besides /proc/sys/net.
CacheDirectory=kpx
CacheDirectoryMode=0700
UMask=0077

# Privileges: root (kubeconfig and sysctl files are root's), but with one
# capability. CAP_NET_ADMIN covers nftables, conntrack (netlink), IPVS and
# the net sysctls. Not CAP_NET_RAW: nft, conntrack, ipvsadm and ip speak
# netlink, which needs no raw IP sockets. Not CAP_SYS_MODULE: the kernel
# loads the nf_tables modules nft asks for by itself; IPVS mode's ip_vs
# modules belong in /etc/modules-load.d (docs/install.md).
CapabilityBoundingSet=CAP_NET_ADMIN
AmbientCapabilities=
NoNewPrivileges=yes

# File system: everything read-only except the cache and the net sysctls.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ReadWritePaths=/proc/sys/net
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible

# Kernel interfaces kpx uses: TCP/UDP (API server, health and metrics
# servers), netlink (via the tools it runs), Unix sockets (journald).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
# The usual service set, minus privileged calls (chown, setuid, ...) and
# resource control (setrlimit, sched_setaffinity, ...): kpx, deno and the
# tools it runs need neither (tested: kpx syncs, reloads and stops under it).
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
# Not MemoryDenyWriteExecute=: V8 compiles JavaScript to machine code at run
# time, which needs writable-then-executable memory.

[Install]
WantedBy=multi-user.target
UNIT
}

default_config() {
  cat <<'CONFIG'
# kpx's configuration: a KubeProxyConfiguration, the file kube-proxy reads
# (kpx accepts its fields; those it does not implement are logged once).
# Written by install.sh, which never replaces it; after a change:
# systemctl reload kpx.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  # How kpx reaches the API server. A node that follows a directory of
  # manifests instead sets KPX_ARGS=--manifests DIR in /etc/kpx/kpx.env.
  kubeconfig: /etc/kpx/kubeconfig
# The cluster's pod network, to tell pod traffic from outside traffic:
# clusterCIDR: 10.244.0.0/16
# The node's name in the cluster, if it is not the hostname:
# hostnameOverride: node-1
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
CONFIG
}

# ---------------------------------------------------------------- artifact

find_artifact() {
  local arch candidates=()
  arch=$(uname -m)
  local f
  for f in "$here"/kpx-*-linux-"$arch" "$here"/dist/kpx-*-linux-"$arch" "$here"/dist/kpx; do
    [ -f "$f" ] && candidates+=("$f")
  done
  case ${#candidates[@]} in
    0) die "Cannot find kpx to install: name the artifact (./install.sh kpx-VERSION-linux-$arch), or build it with deno task package" ;;
    1) artifact=${candidates[0]} ;;
    *) die "Cannot choose which kpx to install: found ${candidates[*]}; name one" ;;
  esac
}

# packaged | compiled; anything else is refused.
artifact_kind() {
  if head -c 8192 "$1" | grep -qx 'KPX_PACKAGE=1'; then
    echo packaged
  elif [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    echo compiled
  else
    echo unknown
  fi
}

check_artifact() {
  if [ ! -f "$artifact" ] || [ ! -r "$artifact" ]; then die "Cannot read the artifact $artifact"; fi
  kind=$(artifact_kind "$artifact")
  case $kind in
    packaged)
      # The package checks its own payload's checksum without unpacking it.
      KPX_LAUNCHER=verify sh "$artifact" >/dev/null ||
        die "Cannot install $artifact: it is corrupted (see above); copy it again"
      ;;
    compiled) ;;
    *) die "Cannot install $artifact: not a kpx executable (neither a kpx package nor an ELF binary)" ;;
  esac
}

# ---------------------------------------------------------------- checks

problems=0
problem() {
  if [ "$force" -eq 1 ]; then
    warn "$* (continuing: --force)"
  else
    printf '%s: %s\n' "$prog" "$*" >&2
  fi
  problems=$((problems + 1))
}

find_nft() {
  local d
  for d in /usr/sbin /sbin /usr/bin /bin; do
    if [ -x "$root$d/nft" ]; then
      echo "$d/nft"
      return 0
    fi
  done
  return 1
}

# None of these checks changes anything: they list, read /proc and /sys.
preflight() {
  local nft before=$problems
  if nft=$(find_nft); then
    say "check: nft is installed ($nft)"
  else
    problem "nft is not installed${root:+ in $root}: kpx loads its rules with it (Debian/Ubuntu: apt-get install nftables)"
  fi
  if [ "$live" -eq 0 ]; then
    say "checks of the kernel and of kube-proxy skipped: $root is not the running system"
    return 0
  fi
  local tables=
  if [ -n "${nft:-}" ]; then
    # nf_tables may be a module not loaded yet: listing loads it (as kpx's
    # first sync would) and changes no rule.
    if ! tables=$("$nft" list tables 2>&1); then
      problem "the kernel has no usable nftables (nf_tables): 'nft list tables' says: $tables"
      tables=
    else
      say "check: the kernel has nftables"
    fi
  elif [ ! -d /sys/module/nf_tables ]; then
    warn "cannot tell whether the kernel has nftables (nf_tables is not loaded, and there is no nft to ask)"
  fi

  # kube-proxy on this node: two proxies programming one node fight.
  before=$problems
  if systemd_running && systemctl is-active --quiet kube-proxy.service 2>/dev/null; then
    problem "kube-proxy.service is active on this node: two proxies would fight over Service traffic; stop and disable it first (systemctl disable --now kube-proxy), or use --force"
  fi
  local c pid
  for c in /proc/[0-9]*/comm; do
    if [ "$(cat "$c" 2>/dev/null)" = kube-proxy ]; then
      pid=${c#/proc/}
      pid=${pid%/comm}
      problem "a kube-proxy process is running (pid $pid): two proxies would fight over Service traffic; stop it first (a DaemonSet: remove it from this node), or use --force"
      break
    fi
  done
  if printf '%s\n' "$tables" | grep -Eq '^table ip6? kube-proxy$'; then
    problem "kube-proxy's nftables tables exist (table ip/ip6 kube-proxy): kube-proxy runs or ran here in nftables mode; stop it and run 'kube-proxy --cleanup', or use --force"
  fi
  if [ -n "${nft:-}" ] && printf '%s\n' "$tables" | grep -qx 'table ip nat' &&
    "$nft" list chain ip nat KUBE-SERVICES >/dev/null 2>&1; then
    problem "kube-proxy's iptables chain KUBE-SERVICES exists (iptables-nft): kube-proxy runs or ran here in iptables mode; stop it and run 'kube-proxy --cleanup', or use --force"
  fi
  # iptables-legacy: only when its nat table is already loaded (listing it
  # otherwise would create it).
  if grep -qx nat /proc/net/ip_tables_names 2>/dev/null && command -v iptables-legacy >/dev/null &&
    iptables-legacy -w -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
    problem "kube-proxy's iptables chain KUBE-SERVICES exists (iptables-legacy): kube-proxy runs or ran here in iptables mode; stop it and run 'kube-proxy --cleanup', or use --force"
  fi
  if [ "$problems" -eq "$before" ]; then
    say "check: no kube-proxy here (no unit active, no process, no tables or chains of its)"
  fi
}

# ---------------------------------------------------------------- install

# The manifest: what install.sh installed, one "kind path sha256" a line.
manifest_get() {
  # manifest_get KIND: the sha256 recorded for KIND, if any.
  [ -f "$root$manifest" ] || return 0
  awk -v k="$1" '$1 == k { print $3 }' "$root$manifest"
}

do_install() {
  [ -n "$artifact" ] || find_artifact
  check_artifact
  say "installing $artifact ($kind) into ${root:-/}"
  preflight
  if [ "$problems" -gt 0 ] && [ "$force" -eq 0 ]; then
    die "Cannot install kpx: $problems check(s) failed (above); --force installs anyway"
  fi
  if [ "$live" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
    # Shows that it runs on this node before anything is installed; a
    # package also unpacks itself into /var/cache/kpx now (the directory the
    # service uses) rather than at its first start.
    local v
    if [ "$kind" = packaged ]; then v=$(sh "$artifact" version); else v=$("$artifact" version); fi ||
      die "Cannot install $artifact: it does not run on this node (above)"
    case $v in
      "kpx "*) say "it runs here: ${v%%$'\n'*}" ;;
      *) die "Cannot install $artifact: not kpx ('$artifact version' printed: ${v:-nothing})" ;;
    esac
  fi

  write_file "$bin" 0755 <"$artifact"
  local bin_changed=$changed

  # The config: created once, never replaced. The manifest remembers the
  # checksum of the one install.sh wrote, so --uninstall can tell whether
  # it was changed since.
  local conf_sha
  conf_sha=$(manifest_get config)
  if [ -e "$root$conf" ]; then
    say "$conf: existing configuration kept"
  else
    default_config | write_file "$conf" 0644
    conf_sha=$(default_config | sha256sum | cut -d' ' -f1)
  fi

  local unit_changed=0
  if has_systemd; then
    local before=$changed
    changed=0
    unit_text | sed "s#^ExecStart=/usr/local/bin/kpx #ExecStart=$bin #" | write_file "$unit" 0644
    unit_changed=$changed
    changed=$((before | changed))
    if [ -L "$root$wants" ] || [ -e "$root$wants" ]; then
      unchanged "$wants (enabled)"
    elif systemd_running; then
      act "enable kpx.service" systemctl enable --quiet kpx.service
    else
      # What `systemctl enable` does for WantedBy=multi-user.target.
      act "enable kpx.service (link $wants)" link "$unit" "$root$wants"
    fi
  else
    say "no systemd${root:+ in $root}: no unit installed; start kpx with: $bin run --config $conf"
  fi

  {
    echo "# What install.sh installed (kind path sha256); install.sh --uninstall reads it."
    echo "bin $bin $(sha "$artifact")"
    [ -n "$conf_sha" ] && echo "config $conf $conf_sha"
    if has_systemd; then echo "unit $unit -"; fi
  } | write_file "$manifest" 0644

  [ "$dry_run" -eq 0 ] || { say "dry run: nothing changed"; return 0; }
  start_service "$bin_changed" "$unit_changed"
}

# Has kpx a source of Services: a kubeconfig, or flags in kpx.env?
has_source() {
  [ -e "$root$kubeconfig" ] || grep -q '^KPX_ARGS=.' "$root$env_file" 2>/dev/null ||
    ! default_config | cmp -s - "$root$conf"
}

start_service() {
  local bin_changed=$1 unit_changed=$2
  has_systemd || return 0
  if ! systemd_running; then
    say "systemd is not running${root:+ in $root}: kpx.service is enabled and starts at the next boot; to start it now: systemctl start kpx (or: $bin run --config $conf)"
    return 0
  fi
  [ "$unit_changed" -eq 0 ] || systemctl daemon-reload
  if [ "$start" -eq 0 ]; then
    say "not started (--no-start): systemctl start kpx"
  elif ! has_source; then
    say "not started: kpx needs $kubeconfig (or KPX_ARGS=--manifests DIR in $env_file, or a changed $conf); then: systemctl start kpx"
  elif systemctl is-active --quiet kpx.service; then
    if [ "$bin_changed" -eq 1 ] || [ "$unit_changed" -eq 1 ]; then
      say "restart kpx.service (new binary or unit)"
      systemctl restart kpx.service
    else
      unchanged "kpx.service (running)"
    fi
  else
    say "start kpx.service"
    systemctl start kpx.service
  fi
  if [ "$start" -eq 1 ] && has_source && ! systemctl is-active --quiet kpx.service; then
    warn "kpx.service is not active; see: journalctl -u kpx"
  fi
}

# ---------------------------------------------------------------- uninstall

remove() {
  # remove PATH...: delete what exists.
  local p
  for p in "$@"; do
    if [ -e "$root$p" ] || [ -L "$root$p" ]; then
      act "remove $p" rm -rf "$root$p"
    fi
  done
}

do_uninstall() {
  local recorded_bin
  recorded_bin=
  if [ -f "$root$manifest" ]; then recorded_bin=$(awk '$1 == "bin" { print $2 }' "$root$manifest"); fi
  [ -z "$recorded_bin" ] || bin=$recorded_bin

  if systemd_running && systemctl cat kpx.service >/dev/null 2>&1; then
    act "stop and disable kpx.service" systemctl disable --now --quiet kpx.service
  fi
  # kpx leaves its rules in place when it stops; cleanup removes its table.
  if [ "$live" -eq 1 ] && [ -x "$bin" ]; then
    act "remove kpx's nftables rules (kpx cleanup)" run_cleanup
  elif [ "$live" -eq 0 ]; then
    say "kpx cleanup skipped: $root is not the running system (run 'kpx cleanup' on the node to remove kpx's rules)"
  fi

  remove "$wants" "$unit" "$bin"
  local recorded
  recorded=$(manifest_get config)
  if [ -e "$root$conf" ]; then
    if [ -n "$recorded" ] && [ "$(sha "$root$conf")" = "$recorded" ]; then
      remove "$conf"
    else
      say "kept $conf: changed since install.sh wrote it (or not written by it)"
    fi
  fi
  local f
  for f in "$env_file" "$kubeconfig" "$unit_dir/kpx.service.d"; do
    if [ -e "$root$f" ]; then say "kept $f: yours, not install.sh's"; fi
  done
  if [ -d "$root$conf_dir" ]; then
    if [ -z "$(ls -A "$root$conf_dir")" ]; then
      act "remove $conf_dir (empty)" rmdir "$root$conf_dir"
    else
      say "kept $conf_dir: it holds files install.sh did not install"
    fi
  fi
  # The package's unpacked versions, and install.sh's record.
  remove "$cache_dir" "$state_dir"
  if systemd_running && [ "$changed" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
    systemctl daemon-reload
  fi
  if [ "$changed" -eq 0 ]; then say "kpx is not installed${root:+ in $root}: nothing to remove"; fi
  [ "$dry_run" -eq 0 ] || say "dry run: nothing changed"
}

run_cleanup() {
  "$bin" cleanup || warn "kpx cleanup failed (above): kpx's table inet kpx may remain; remove it with: nft delete table inet kpx"
}

if [ "$uninstall" -eq 1 ]; then
  [ -z "$artifact" ] || die "Cannot parse arguments: --uninstall takes no artifact"
  do_uninstall
else
  do_install
fi
