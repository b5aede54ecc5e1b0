#!/usr/bin/env bash
# Undoes node-up.sh: stops every process it started (by pid file, plus the containerd shims
# and pod processes of *this* containerd), unmounts what they mounted, removes kube-proxy's
# and CNI's iptables rules, the bridge, the pod cgroups, and restores the sysctls it changed.
# Removes $NODE_STATE too unless NODE_KEEP_STATE=1 (then a later node-up.sh reuses etcd data
# and certs). Build caches are kept. Idempotent; safe to run when nothing is up.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root"

# Pids of processes whose executable is $1 and whose command line mentions $2.
pids_of() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [[ $exe == "$1" ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$2" && echo "${p#/proc/}"
  done
}

stop_group kubelet
stop_group kube-proxy

# Pod containers: kill them through containerd while it is still up, then whatever is left
# in the kubelet's pod cgroups, then the shims that belonged to our containerd.
if pid_alive containerd bash; then
  c="ctr --address $CONTAINERD_SOCK -n k8s.io"
  for t in $($c tasks ls -q 2>/dev/null); do $c tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($c tasks ls -q 2>/dev/null); do $c tasks delete -f "$t" >/dev/null 2>&1; done
  for t in $($c containers ls -q 2>/dev/null); do $c containers delete "$t" >/dev/null 2>&1; done
fi
pod_cgroups() { find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null; }
for cg in $(pod_cgroups); do
  find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
done
for p in $(pids_of "$BIN/containerd-shim-runc-v2" "$CONTAINERD_SOCK"); do
  log "killing shim $p"; kill -KILL "$p" 2>/dev/null
done
stop_group containerd
stop_group kube-scheduler
stop_group kube-controller-manager
stop_group kube-apiserver
stop_group etcd

# kube-proxy's iptables (and CNI's, if any) rules.
if [[ -x $BIN/kube-proxy ]] && command -v iptables >/dev/null; then
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
for ipt in iptables ip6tables; do
  command -v $ipt-save >/dev/null || continue
  if $ipt-save 2>/dev/null | grep -qE 'KUBE-|CNI-'; then
    $ipt-save | grep -vE 'KUBE-|CNI-' | $ipt-restore || log "WARN: $ipt-restore failed"
  fi
done

# Mounts made by kubelet/containerd/CRI under our dirs, and CRI's network namespaces.
umount_under() {
  local m
  for m in $(awk -v a="$1" 'index($2, a) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "WARN: cannot unmount $m"
  done
}
for d in "$STATE/" "$RUN/" /run/netns/cni- /var/run/netns/cni- /run/containerd/; do umount_under "$d"; done
rm -f /run/netns/cni-* 2>/dev/null

# Pod cgroups (deepest first).
for cg in $(pod_cgroups); do
  find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || log "WARN: cannot remove cgroup $cg"
done

ip link show "$BRIDGE" >/dev/null 2>&1 && { log "deleting bridge $BRIDGE"; ip link delete "$BRIDGE"; }
# Left-over host ends of pod veths (normally gone with their namespaces).
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link delete "$v"; done

if [[ -f $STATE/host-before ]]; then
  while read -r kind what; do
    case $kind in
      sysctl) [[ -n ${what#*=} ]] && sysctl -qw "$what" ;;
      absent) [[ -e $what ]] && { log "removing $what (created by the node)"; rm -rf "$what"; } ;;
    esac
  done <"$STATE/host-before"
fi

# nf_tables tables that did not exist before node-up.sh and are now empty (only the base
# chains iptables-nft created): delete them.
if [[ -f $STATE/host-before ]] && command -v nft >/dev/null; then
  while read -r _ fam tbl; do
    grep -qx "nfttable $fam $tbl" "$STATE/host-before" && continue
    [[ $fam == ip || $fam == ip6 ]] || continue
    if ! nft list table "$fam" "$tbl" 2>/dev/null | grep -vE '^\s*(table|chain|type|\}|$)' | grep -q .; then
      nft delete table "$fam" "$tbl" && log "deleted empty nf_tables table $fam $tbl"
    fi
  done < <(nft list tables 2>/dev/null)
fi

rm -rf "$RUN"
if [[ ${NODE_KEEP_STATE:-} != 1 ]]; then
  rm -rf "$STATE"
fi
log "node down"
