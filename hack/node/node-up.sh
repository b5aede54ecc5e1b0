#!/usr/bin/env bash
# Brings up a single-node Kubernetes ($K8S_VERSION) on this machine, without Docker or any
# download site other than the Go module proxy and Debian apt:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+runc from
#   Debian), kubelet, kube-proxy (iptables mode), bridge CNI on a private bridge.
# Idempotent: builds only what is missing, starts only what is not running, and returns
# once the node is Ready. Undo with node-down.sh. Needs root.
# Env: NODE_STATE, NODE_RUN, CACHE, K8S_VERSION, ... (see lib.sh).
# `node-up.sh --build-only` only fills the build cache (for CI cache warm-up).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[[ $(id -u) == 0 || ${1:-} == --build-only ]] || die "run as root"
t0=$(date +%s)

# ---------------------------------------------------------------- build (cached)
timed() { local s; s=$(date +%s); "$@"; log "$1 took $(( $(date +%s) - s ))s"; }

build_k8s() {
  local want=() b
  for b in kube-controller-manager kube-scheduler kubelet kube-proxy; do
    [[ -x $BIN/$b ]] || want+=("k8s.io/kubernetes/cmd/$b")
  done
  for b in kube-apiserver kubectl; do
    [[ -x $K8S_TOOLS_BIN/$b || -x $BIN/$b ]] || want+=("k8s.io/kubernetes/cmd/$b")
  done
  local need_etcd=; [[ -x $K8S_TOOLS_BIN/etcd || -x $BIN/etcd ]] || need_etcd=1
  [[ ${#want[@]} -gt 0 || -n $need_etcd ]] || return 0
  local src=$NODE_CACHE/src/k8s staging=v0.${K8S_VERSION#v1.} minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  mkdir -p "$src" "$BIN"
  (
    cd "$src"
    if [[ ! -f go.sum ]]; then
      # Same technique as hack/k8s-tools.sh: require k8s.io/kubernetes and replace each
      # staging module (./staging/src in kubernetes' own go.mod) by its published version.
      printf 'module extauthz.local/node-tools\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n' "$K8S_VERSION" >go.mod
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/' "$gomod" |
        awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}' >>go.mod
      cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
      go mod tidy -e >/dev/null 2>&1 || true
      go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    fi
    local pkg=k8s.io/component-base/version
    local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    if [[ ${#want[@]} -gt 0 ]]; then
      log "building ${want[*]##*/} (cold: ~10 min on 2 cores)"
      GOFLAGS=-mod=mod go build -tags tools -ldflags "$ldflags" -o "$BIN/" "${want[@]}"
    fi
    if [[ -n $need_etcd ]]; then
      GOFLAGS=-mod=mod go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
    fi
  )
}

build_containerd() {
  [[ -x $BIN/containerd && -x $BIN/ctr && -x $BIN/containerd-shim-runc-v2 ]] && return 0
  log "building containerd $CONTAINERD_VERSION"
  local m=github.com/containerd/containerd/v2
  GOBIN=$BIN CGO_ENABLED=0 go install -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    -ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/ctr@$CONTAINERD_VERSION" \
    "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
}

build_cni() {
  local p want=()
  for p in main/bridge main/loopback ipam/host-local meta/portmap; do
    [[ -x $CNI_BIN/${p#*/} ]] || want+=("github.com/containernetworking/plugins/plugins/$p@$CNI_VERSION")
  done
  [[ ${#want[@]} -gt 0 ]] || return 0
  log "building CNI plugins $CNI_VERSION"
  mkdir -p "$CNI_BIN"
  GOBIN=$CNI_BIN CGO_ENABLED=0 go install -ldflags "-s -w" "${want[@]}"
}

# The pause (sandbox) image: a static Go binary, one layer, written as a
# docker-format tarball by hack/node/mkimage (go-containerregistry).
# Always rebuilt (seconds, from Go's build cache), so the cache never holds a tool
# older than the repository's.
build_images() {
  log "building mkimage and the pause image"
  mkdir -p "$IMAGES/bin"
  (
    cd "$here/../.."
    export CGO_ENABLED=0
    go build -trimpath -ldflags "-s -w" -o "$IMAGES/bin/mkimage" ./hack/node/mkimage
    go build -trimpath -ldflags "-s -w" -o "$IMAGES/bin/pause" ./hack/node/pause
  )
  "$IMAGES/bin/mkimage" -bin "$IMAGES/bin/pause" -name /pause -user 65535:65535 -tag "$PAUSE_IMAGE" -o "$IMAGES/pause.tar"
}

tb=$(date +%s)
timed build_k8s
timed build_containerd
timed build_cni
timed build_images
for b in kube-apiserver kubectl etcd; do
  [[ -x $K8S_TOOLS_BIN/$b ]] || K8S_TOOLS_BIN=$BIN
done
log "builds ready in $(( $(date +%s) - tb ))s"
[[ ${1:-} == --build-only ]] && exit 0

# ---------------------------------------------------------------- host prerequisites
need_pkgs=()
[[ -x $RUNC ]] || need_pkgs+=(runc)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v conntrack >/dev/null || need_pkgs+=(conntrack)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v nft >/dev/null || need_pkgs+=(nftables)   # only for node-down.sh's table cleanup
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
  log "apt-get install ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
fi

mkdir -p "$STATE" "$RUN/pids" "$LOGS"
# Remember what the host looked like so node-down.sh can put it back.
if [[ ! -f $STATE/host-before ]]; then
  {
    for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet; do
      echo "sysctl $k=$(sysctl -n $k 2>/dev/null || echo)"
    done
    for d in /var/lib/cni /var/run/netns /var/log/pods /var/log/containers /var/lib/kubelet /etc/cni /opt/cni /var/lib/containerd /run/containerd /opt/containerd /run/runc; do
      [[ -e $d ]] || echo "absent $d"
    done
    # nf_tables tables (iptables-nft creates ip/ip6 filter/nat/mangle on first use)
    nft list tables 2>/dev/null | sed 's/^table /nfttable /'
  } >"$STATE/host-before"
fi

# cgroups: kubelet 1.37 still runs on cgroup v1 with failCgroupV1=false (the default is true).
# On this Firecracker VM cgroup v2 is not an option: PID 1 (process_api) holds the v1
# hierarchies (`umount /sys/fs/cgroup/{pids,cpu,blkio,...}` fails with "target is busy") and
# keeps live child cgroups in the memory hierarchy, so cpu/memory/pids can never be rebound
# to cgroup2 (/sys/fs/cgroup/unified offers only hugetlb). So: v1, cgroupfs driver.
if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then CGROUP_V1=false; else CGROUP_V1=true; fi
# kubelet on v1 wants these; Firecracker's init does not mount hugetlb etc, which is fine.
for c in cpu cpuacct cpuset memory pids; do
  [[ $CGROUP_V1 == false ]] || grep -qE "^cgroup /sys/fs/cgroup/[^ ]+ cgroup [^ ]*\b$c\b" /proc/mounts ||
    die "cgroup v1 controller $c not mounted"
done

# Private bridge; the apiserver listens on its address so pods (via kube-proxy's ClusterIP
# DNAT) and the host both reach it. The bridge CNI plugin reuses it (isGateway).
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
[[ $(ip -o -4 addr show dev "$BRIDGE") == *" $BRIDGE_IP/"* ]] || ip addr add "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

# ---------------------------------------------------------------- PKI (openssl)
mkdir -p "$PKI"
cert() { # name CN O [sans] -- client/server cert signed by the cluster CA
  local n=$1 cn=$2 o=$3 san=${4:-}
  [[ -f $PKI/$n.crt ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$n.key" 2>/dev/null
  local subj="/CN=$cn"; [[ -n $o ]] && subj="/O=$o$subj"
  openssl req -new -key "$PKI/$n.key" -subj "$subj" -out "$PKI/$n.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -extfile "$PKI/$n.ext" -out "$PKI/$n.crt" 2>/dev/null
  rm -f "$PKI/$n.csr" "$PKI/$n.ext"
}
if [[ ! -f $PKI/ca.crt ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=extauthz-node-ca" -days 365 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
fi
[[ -f $PKI/sa.key ]] || {
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}
cert apiserver kube-apiserver "" "IP:$BRIDGE_IP,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert admin admin system:masters
cert controller-manager system:kube-controller-manager ""
cert scheduler system:kube-scheduler ""
cert kubelet "system:node:$NODE_NAME" system:nodes
cert kube-proxy system:kube-proxy ""

kubeconfig() { # name cert
  local f=$STATE/$1.kubeconfig
  [[ -f $f ]] && return 0
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$BRIDGE_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}
for k in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig "$k" "$k"; done

# ---------------------------------------------------------------- configs
# Config files are (re)written only when their content changes; kube-proxy exits when its
# config file is touched, and a changed config restarts its component below.
changed=()
write_conf() { # name path < content
  local new; new=$(cat)
  if [[ ! -f $2 || "$(cat "$2")" != "$new" ]]; then
    printf '%s\n' "$new" >"$2"; changed+=("$1")
  fi
}
mkdir -p "$STATE/cni/net.d" "$STATE/containerd" "$RUN/containerd" "$STATE/kubelet"
write_conf cni "$STATE/cni/net.d/10-extauthz.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "extauthz",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
write_conf containerd "$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # This VM's root lacks CAP_SYS_RESOURCE (dropped from the bounding set), so runc cannot
  # lower oom_score_adj (sandbox -998, Guaranteed -997): clamp to containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$STATE/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
write_conf kubelet "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
failCgroupV1: false
oomScoreAdj: 0
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
staticPodPath: ""
podLogsDir: $STATE/pods-logs
EOF
write_conf kube-proxy "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0}
nodePortAddresses: ["$BRIDGE_IP/32"]
EOF

# ---------------------------------------------------------------- start
# Each component runs under a tiny restart loop in its own session (pid file = the loop's
# pid = its process group), like a systemd unit with Restart=always: kube-scheduler, for
# one, exits on purpose when it detects a corrupted cache. node-down.sh kills the group.
start() { # name binary args...
  local n=$1; shift
  if pid_alive "$n" bash; then
    [[ " ${changed[*]} " == *" $n "* ]] || return 0
    log "config of $n changed: restarting"
    stop_group "$n"
  fi
  log "starting $n"
  setsid bash -c 'trap "kill -TERM \$child 2>/dev/null; wait \$child; exit 0" TERM INT
    while :; do
      "$@" & child=$!; wait $child; rc=$?
      echo "$(date +%FT%T) [supervisor] $1 exited rc=$rc; restarting in 2s"; sleep 2
    done' "$n" "$@" >>"$LOGS/$n.log" 2>&1 </dev/null &
  echo $! >"$RUN/pids/$n.pid"
}
wait_for() { # what timeout cmd...
  local what=$1 t=$2 i; shift 2
  for ((i = 0; i < t * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "timed out waiting for $what; last lines of logs:"; tail -n 20 "$LOGS"/*.log >&2 || true
  die "$what not ready after ${t}s"
}
api() { kubectl --request-timeout=5s "$@"; }

start etcd "$K8S_TOOLS_BIN/etcd" --name default --data-dir "$STATE/etcd" \
  --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
  --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
  --initial-cluster "default=http://$ETCD_PEER" --unsafe-no-fsync=true
start kube-apiserver "$K8S_TOOLS_BIN/kube-apiserver" \
  --etcd-servers "http://$ETCD_CLIENT" \
  --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-preferred-address-types InternalIP \
  --allow-privileged=true --profiling=false
wait_for kube-apiserver 90 api get --raw /readyz
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
  --use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
  --profiling=false
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false
start containerd "$BIN/containerd" --config "$STATE/containerd/config.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
ctr() { command ctr "$@" 2>/dev/null; }  # ctr warns about cgroup v1 on every call

# Images: (re-)import every time (a few MB, idempotent, picks up rebuilt tarballs); kubelet
# never pulls: pause is containerd's pinned sandbox image, pods use imagePullPolicy Never.
for f in pause; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --local "$IMAGES/$f.tar" >/dev/null
done

start kubelet "$BIN/kubelet" \
  --config "$STATE/kubelet/config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
  --root-dir "$STATE/kubelet/root" --cert-dir "$STATE/kubelet/pki" \
  --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" -v 1
start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

wait_for "node $NODE_NAME registered" 90 api get node "$NODE_NAME"
wait_for "node $NODE_NAME Ready" 120 api wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
log "node $NODE_NAME Ready; $(( $(date +%s) - t0 ))s since node-up.sh started"
log "export KUBECONFIG=$KUBECONFIG"
