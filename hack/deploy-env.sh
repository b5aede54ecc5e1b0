#!/usr/bin/env bash
# Installs what the deploy tests need, outside the repository, and prints the
# variables that point at it (eval "$(hack/deploy-env.sh)"):
#   helm v4.3.1, kustomize v5.8.1 and promtool (Prometheus v0.316.0), built from
#   the Go module proxy;
#   kube-apiserver, etcd and kubectl v1.37.2 (hack/k8s-tools.sh);
#   the published CRDs the optional objects need (ServiceMonitor, PrometheusRule,
#   AuthorizationPolicy, SecurityPolicy, ReferenceGrant, BackendTLSPolicy, cert-manager's
#   Certificate), read from the Go modules
#   that ship them — used in place, never copied into this repository.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/extauthz}
HELM_VERSION=v4.3.1
KUSTOMIZE_VERSION=v5.8.1
PROMTOOL_VERSION=v0.316.0 # Prometheus 3.x's module version
log() { echo "deploy-env: $*" >&2; }

tool() { # name version module
  local dir="$CACHE/tools/$1-$2"
  if [[ ! -x "$dir/$1" ]]; then
    log "go install $3@$2"
    GOBIN="$dir" GOFLAGS=-mod=mod go install "$3@$2" >&2
  fi
  echo "$dir/$1"
}
helm=$(tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm)
kustomize=$(tool kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5)
promtool=$(tool promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool)
assets=$("$root/hack/k8s-tools.sh")

# go mod download -json prints the module's folder in the module cache.
moddir() {
  (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}
istio=$(moddir istio.io/api@v1.28.0)
eg=$(moddir github.com/envoyproxy/gateway@v1.6.0)
promop=$(moddir github.com/prometheus-operator/prometheus-operator@v0.85.0)
certmanager=$(moddir github.com/cert-manager/cert-manager@v1.21.2)
crds=(
  "$istio/kubernetes/customresourcedefinitions.gen.yaml"
  "$eg/charts/gateway-helm/crds/gatewayapi-crds.yaml"
  "$eg/charts/gateway-helm/crds/generated/gateway.envoyproxy.io_securitypolicies.yaml"
  "$promop/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  "$promop/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  "$certmanager/deploy/crds/cert-manager.io_certificates.yaml"
)
for f in "${crds[@]}"; do [[ -f "$f" ]] || { log "missing CRD file $f"; exit 1; }; done

cat <<ENV
export HELM=$helm
export KUSTOMIZE=$kustomize
export PROMTOOL=$promtool
export KUBEBUILDER_ASSETS=$assets
export EXTAUTHZ_CRDS=$(IFS=:; echo "${crds[*]}")
ENV
