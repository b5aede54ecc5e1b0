# betterauth-extauthz — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Heavy tools live outside the repository so a fresh clone reuses them.
CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/extauthz
FUZZTIME ?= 10s
# Test files that need a real kube-apiserver (envtest) or the whole stack (e2e) are
# behind build tags, so that a bare `go test ./...` on a fresh clone is the unit run.
TAGS     := e2e,envtest,soak,node

# with_env runs the rest of the recipe line with the variables the script $(1)
# prints (tool paths it installed) exported.
with_env = env_file=$$(mktemp); $(1) > "$$env_file"; source "$$env_file"; rm -f "$$env_file";

.PHONY: help build generate test lint unit deploy-test soak node-test k8s-tools fuzz e2e bench bench-envoy demo clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/\1\t\2/' | expand -t 14

build: ## the extauthz binary, static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/extauthz ./cmd/extauthz

generate: ## the policy JSON Schema (and the chart's values schema) and the chart README, from the Go types and values.yaml
	$(GO) generate ./internal/policy
	$(GO) run ./hack/chartdoc

test: lint unit fuzz deploy-test e2e node-test ## everything CI runs

STATICCHECK := $(CACHE)/tools/staticcheck-v0.8.2/staticcheck
$(STATICCHECK):
	GOBIN=$(dir $(STATICCHECK)) GOFLAGS=-mod=mod $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOIMPORTS := $(CACHE)/tools/goimports-v0.52.0/goimports
$(GOIMPORTS):
	GOBIN=$(dir $(GOIMPORTS)) GOFLAGS=-mod=mod $(GO) install golang.org/x/tools/cmd/goimports@v0.52.0

lint: $(STATICCHECK) $(GOIMPORTS) ## gofmt, goimports, go vet and staticcheck must be clean (all build tags)
	@files=$$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'); \
	unformatted=$$(gofmt -l $$files; $(GOIMPORTS) -local github.com/betterauth-extauthz/extauthz -l $$files); \
	if [ -n "$$unformatted" ]; then echo "gofmt/goimports needed:"; echo "$$unformatted" | sort -u; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...
	$(STATICCHECK) -tags $(TAGS) ./...

unit: ## unit and component tests with the race detector, internal/k8s against a real kube-apiserver + etcd (built once)
	assets=$$(hack/k8s-tools.sh); \
	KUBEBUILDER_ASSETS="$$assets" $(GO) test -race -count=1 -tags envtest $$($(GO) list ./... | grep -Ev '/test/e2e|/deploy$$')

deploy-test: ## Helm chart, kustomize, Dockerfile, dashboard and alerts, against a real kube-apiserver
	$(call with_env,hack/deploy-env.sh) \
	$(GO) test -count=1 -v -tags envtest ./deploy/ 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)|^        [a-z.]+/[a-z0-9-]+ (created|configured) \(server dry run\)$$'

k8s-tools: ## kube-apiserver, etcd and kubectl v1.37.2 from the Go module proxy, cached
	hack/k8s-tools.sh

fuzz: ## a short fuzzing run of the token parser and its hand JSON decoder, the path, host and method canonicalisers, and the whole decision
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./internal/token
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeFlat$$' -fuzztime=$(FUZZTIME) ./internal/token
	$(GO) test -run='^$$' -fuzz='^FuzzClaimSet$$' -fuzztime=$(FUZZTIME) ./internal/token
	$(GO) test -run='^$$' -fuzz='^FuzzCanonicalize$$' -fuzztime=$(FUZZTIME) ./internal/policy
	$(GO) test -run='^$$' -fuzz='^FuzzHostMethod$$' -fuzztime=$(FUZZTIME) ./internal/policy
	$(GO) test -run='^$$' -fuzz='^FuzzDecide$$' -fuzztime=$(FUZZTIME) ./internal/engine

e2e: ## the whole chain with real Better Auth, Envoy, nginx, FastAPI and PostgreSQL (installs them)
	$(call with_env,hack/e2e-env.sh) \
	$(GO) test -count=1 -v -timeout 15m -tags e2e ./test/e2e/ 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'

node-test: ## the Helm chart on a real single-node Kubernetes built here (hack/node), with the real Envoy in front; needs root
	$(call with_env,hack/e2e-env.sh) $(call with_env,hack/deploy-env.sh) \
	$(GO) test -count=1 -v -timeout 60m -tags node ./test/node/ 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)'

soak: ## 30 minutes of steady load with token churn and JWKS rotations; fails if RSS, heap or goroutines grow past their bounds (SOAK_DURATION=…)
	$(GO) test -count=1 -v -tags soak -timeout 60m ./test/soak/

GHZ := $(CACHE)/tools/ghz-v0.120.0/ghz
$(GHZ):
	GOBIN=$(dir $(GHZ)) GOFLAGS=-mod=mod $(GO) install github.com/bojand/ghz/cmd/ghz@v0.120.0

bench: build $(GHZ) ## go test benchmarks of the Check path, then the ghz load benchmark and its targets table (about 7 minutes)
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./internal/engine/ ./internal/authz/
	$(GO) build -o bin/trivial ./bench/trivial
	$(GO) run ./bench/loadbench -ghz $(GHZ) -extauthz bin/extauthz -trivial bin/trivial $(BENCH_FLAGS)

bench-envoy: ## latency the ext_authz hop adds through a real Envoy (plaintext, mTLS, HTTP mode), next to Envoy's jwt_authn and Caddy
	$(call with_env,hack/e2e-env.sh) \
	$(GO) test -run '^$$' -bench EnvoyHop -benchtime 5000x -count 1 -tags e2e ./test/e2e/

demo: ## Better Auth + extauthz + Envoy + nginx + FastAPI, two users, a transcript; DEMO_FLAGS=-stop to end at once
	@$(call with_env,hack/e2e-env.sh) \
	$(GO) run ./test/e2e/demo $(DEMO_FLAGS)

clean: ## remove bin/ (the tool cache outside the repository stays)
	rm -rf bin
