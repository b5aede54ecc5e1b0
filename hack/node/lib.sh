# shellcheck shell=bash disable=SC2034
# Shared settings for node-up.sh and node-down.sh. Sourced, not run.
# Everything listens on 127.0.0.1 or on the private bridge $BRIDGE ($BRIDGE_IP).
K8S_VERSION=${K8S_VERSION:-v1.37.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.7}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}  # matches hack/k8s-tools.sh's go.sum today
CNI_VERSION=${CNI_VERSION:-v1.9.1}
GGCR_VERSION=${GGCR_VERSION:-v0.22.1}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/extauthz}
NODE_CACHE=$CACHE/node
BIN=$NODE_CACHE/bin                    # kube-* / kubelet / containerd / ctr / shim / mkimage
K8S_TOOLS_BIN=$CACHE/k8s/$K8S_VERSION/bin   # kube-apiserver, kubectl, etcd (hack/k8s-tools.sh)
CNI_BIN=$NODE_CACHE/cni/bin
IMAGES=$NODE_CACHE/images
STATE=${NODE_STATE:-/var/lib/extauthz-node}  # etcd data, certs, kubelet/containerd roots, logs
RUN=${NODE_RUN:-/run/extauthz-node}          # sockets, pid files
LOGS=$STATE/log
PKI=$STATE/pki
NODE_NAME=${NODE_NAME:-nodelab}
BRIDGE=${BRIDGE:-extauthz0}
BRIDGE_IP=${BRIDGE_IP:-10.244.0.1}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/24}
KUBERNETES_SVC_IP=${KUBERNETES_SVC_IP:-10.96.0.1}
API_PORT=${API_PORT:-6443}
ETCD_CLIENT=127.0.0.1:${ETCD_PORT:-23790}
ETCD_PEER=127.0.0.1:${ETCD_PEER_PORT:-23800}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.local/extauthz/pause:3.10}
CONTAINERD_SOCK=$RUN/containerd/containerd.sock
RUNC=${RUNC:-/usr/sbin/runc}
export KUBECONFIG=$STATE/admin.kubeconfig
PATH=$BIN:$K8S_TOOLS_BIN:$PATH

log() { printf '%s [node] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pid_alive NAME: the pid file exists and names a live process whose argv[0] is NAME's binary.
pid_alive() {
  local f=$RUN/pids/$1.pid pid a0=
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  IFS= read -r -d '' a0 </proc/$pid/cmdline 2>/dev/null || [[ -n $a0 ]] || return 1
  [[ $a0 =~ ${2:-$1} ]]
}

# stop_group NAME: TERM the supervisor loop (which TERMs and waits for its component), wait
# up to ${STOP_TIMEOUT:-60}s, then KILL the whole process group.
stop_group() {
  local n=$1 pid i
  pid_alive "$n" "bash|/$n\$" || { rm -f "$RUN/pids/$n.pid"; return 0; }
  pid=$(<"$RUN/pids/$n.pid")
  log "stopping $n (process group $pid)"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < ${STOP_TIMEOUT:-60} * 2; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "killing $n (process group $pid)"; kill -KILL -- "-$pid" 2>/dev/null; sleep 0.5
  fi
  rm -f "$RUN/pids/$n.pid"
}
