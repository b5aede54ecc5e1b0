#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl (v1.37.2) from the Go module proxy into
# $CACHE/k8s/bin, for envtest and server-side dry runs. No download site other than
# the module proxy is reachable here, so setup-envtest's prebuilt archives are out.
# Idempotent: does nothing when the binaries are already there.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.37.2}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/extauthz}
out="$CACHE/k8s/$K8S_VERSION"
bin="$out/bin"
if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/kubectl" ]]; then
  echo "$bin"
  exit 0
fi
staging_version="v0.${K8S_VERSION#v1.}"
src="$out/src"
mkdir -p "$src" "$bin"
cd "$src"
cat > go.mod <<MOD
module extauthz.local/k8s-tools

go 1.26

require k8s.io/kubernetes $K8S_VERSION
MOD
# kubernetes' own go.mod points its staging modules at ./staging/src; a module that
# depends on it must replace each with the published version instead.
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}' >> go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
go mod tidy -e >/dev/null 2>&1 || true
go get "k8s.io/kubernetes@$K8S_VERSION" go.etcd.io/etcd/server/v3 >/dev/null
pkg=k8s.io/component-base/version
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
GOFLAGS=-mod=mod go build -tags tools -ldflags "$ldflags" -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
GOFLAGS=-mod=mod go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
echo "$bin"
