package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/k8s"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
	"github.com/betterauth-extauthz/extauthz/internal/server"
	"github.com/betterauth-extauthz/extauthz/internal/tlsconf"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// serveFlags are serve's flags; each may also come from an EXTAUTHZ_* variable.
type serveFlags struct {
	config, configMap, configMapKey, kubeconfig string
	policySelector, policyNamespaces            string
	grpcAddr, httpAddr, adminAddr               string
	logLevel, realm                             string
	shutdownDelay, shutdownTimeout              time.Duration
	pprof                                       bool
	cacheEntries, cacheBytes                    int
	tlsCert, tlsKey, tlsClientCA, tlsClientSANs string
	adminTLS                                    bool
	logAllows                                   float64
	denyLogsPerSecond                           int
	traceTrustHeaders                           bool
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "policy file (YAML), watched for changes")
	fs.StringVar(&f.configMap, "policy-configmap", "", "NAMESPACE/NAME (or NAME, in the pod's namespace) of a ConfigMap holding the policy, watched through the API server")
	fs.StringVar(&f.configMapKey, "policy-key", k8s.DefaultKey, "key of the policy in the ConfigMap")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for --policy-configmap and --policy-selector (default: in-cluster service account)")
	fs.StringVar(&f.policySelector, "policy-selector", "", "label selector of ConfigMaps holding policy fragments (under --policy-key), composed with the base policy")
	fs.StringVar(&f.policyNamespaces, "policy-namespaces", "", "comma-separated namespaces to watch for --policy-selector (default: every namespace)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", ":9001", "Envoy ext_authz gRPC listen address")
	fs.StringVar(&f.httpAddr, "http-addr", ":9002", "HTTP check listen address (Envoy HTTP, nginx, Traefik)")
	fs.StringVar(&f.adminAddr, "admin-addr", ":9003", "admin listen address (/healthz, /readyz, /metrics)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.realm, "realm", authz.DefaultRealm, "realm of WWW-Authenticate challenges")
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second, "time readiness is false before the servers stop")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "deadline for in-flight checks at shutdown")
	fs.BoolVar(&f.pprof, "admin-pprof", false, "serve Go's /debug/pprof/ on the admin port (profiling; keep the admin port private)")
	fs.IntVar(&f.cacheEntries, "token-cache-entries", token.DefaultCacheEntries, "verified tokens to remember (0 disables the cache)")
	fs.IntVar(&f.cacheBytes, "token-cache-bytes", token.DefaultCacheBytes, "memory budget of the verified-token cache (and a quarter as much again for the allow answers kept for cached tokens)")
	fs.StringVar(&f.tlsCert, "tls-cert-file", "", "PEM certificate chain: serve the gRPC and HTTP check listeners over TLS (re-read on change)")
	fs.StringVar(&f.tlsKey, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca-file", "", "PEM CA certificates: require a client certificate signed by one (mTLS)")
	fs.StringVar(&f.tlsClientSANs, "tls-client-san", "", "comma-separated client SANs allowed with --tls-client-ca-file: spiffe://… (URI) or dns:NAME")
	fs.Float64Var(&f.logAllows, "log-allows", 0, "fraction of allows (0 to 1) that get a decision log line")
	fs.IntVar(&f.denyLogsPerSecond, "log-denies-per-second", engine.DefaultDenyLogsPerSecond, "deny log lines per reason a second (the rest are counted in one line; -1: no cap)")
	fs.BoolVar(&f.traceTrustHeaders, "trace-trust-request-headers", false, "continue the trace named by the checked request's own traceparent/B3 headers (only behind a proxy that sets them itself); otherwise they are a link of a new trace")
	fs.BoolVar(&f.adminTLS, "admin-tls", false, "serve the admin listener over TLS too (same certificate, no client certificate)")
}

// tls loads the serving certificate, when the flags ask for TLS.
func (f *serveFlags) loadTLS(log *slog.Logger, m *metrics.Recorder) (*tlsconf.Server, error) {
	if f.tlsCert == "" && f.tlsKey == "" {
		if f.tlsClientCA != "" || f.tlsClientSANs != "" || f.adminTLS {
			return nil, usageErr("--tls-client-ca-file, --tls-client-san and --admin-tls need --tls-cert-file and --tls-key-file")
		}
		return nil, nil
	}
	var sans []string
	for _, v := range strings.Split(f.tlsClientSANs, ",") {
		if v = strings.TrimSpace(v); v != "" {
			sans = append(sans, v)
		}
	}
	if f.tlsClientSANs != "" && len(sans) == 0 {
		// An allow-list that parses to nothing must not turn the SAN check off.
		return nil, usageErr("--tls-client-san %q lists no SAN", f.tlsClientSANs)
	}
	return tlsconf.New(tlsconf.Config{CertFile: f.tlsCert, KeyFile: f.tlsKey, ClientCAFile: f.tlsClientCA, ClientSANs: sans, Log: log, OnReload: m.TLSReloaded})
}

// serviceAccountNamespace is where Kubernetes tells a pod its namespace.
var serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// configMapRef reads --policy-configmap: NAMESPACE/NAME, or a bare NAME in the
// pod's own namespace (POD_NAMESPACE, else the service account's namespace file).
// A bare name is a whole argument, which kustomize's name references rewrite when
// an overlay adds a namePrefix.
func configMapRef(ref string) (ns, name string, err error) {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		if ns == "" || name == "" || strings.Contains(name, "/") {
			return "", "", usageErr("--policy-configmap wants NAMESPACE/NAME or NAME, got %q", ref)
		}
		return ns, name, nil
	}
	ns = os.Getenv("POD_NAMESPACE")
	if ns == "" {
		b, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return "", "", usageErr("--policy-configmap %q has no namespace, and neither POD_NAMESPACE nor %s says which: %v", ref, serviceAccountNamespace, err)
		}
		ns = strings.TrimSpace(string(b))
	}
	if ns == "" {
		return "", "", usageErr("--policy-configmap %q: the pod's namespace is empty", ref)
	}
	return ns, ref, nil
}

// fragments is the fragment watcher --policy-selector asks for, or nil.
func (f *serveFlags) fragments(log *slog.Logger) (*k8s.Fragments, error) {
	if f.policySelector == "" {
		if f.policyNamespaces != "" {
			return nil, usageErr("--policy-namespaces needs --policy-selector")
		}
		return nil, nil
	}
	var namespaces []string
	for _, ns := range strings.Split(f.policyNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	if f.policyNamespaces != "" && len(namespaces) == 0 {
		return nil, usageErr("--policy-namespaces %q lists no namespace", f.policyNamespaces)
	}
	rest, err := k8s.RESTConfig(f.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	return k8s.NewFragments(k8s.FragmentsConfig{Selector: f.policySelector, Namespaces: namespaces, Key: f.configMapKey, REST: rest, Log: log})
}

// source is the policy source the flags name: a file, a ConfigMap, or the default
// policy for BETTER_AUTH_URL.
func (f *serveFlags) source(log *slog.Logger) (reload.Source, error) {
	switch {
	case f.config != "" && f.configMap != "":
		return nil, usageErr("give --config or --policy-configmap, not both")
	case f.configMap != "":
		ns, name, err := configMapRef(f.configMap)
		if err != nil {
			return nil, err
		}
		rest, err := k8s.RESTConfig(f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubernetes config: %w", err)
		}
		return k8s.NewConfigMap(k8s.Config{Namespace: ns, Name: name, Key: f.configMapKey, REST: rest, Log: log})
	case f.config != "":
		return reload.NewFile(reload.FileConfig{Path: f.config, Log: log})
	case os.Getenv("BETTER_AUTH_URL") != "":
		return reload.Static{Name: "env:BETTER_AUTH_URL", Doc: DefaultPolicy(os.Getenv("BETTER_AUTH_URL"))}, nil
	}
	return nil, usageErr("give --config FILE, --policy-configmap NAMESPACE/NAME, or set BETTER_AUTH_URL")
}

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	if err := envDefaults(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return usageErr("--log-level: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	src, err := f.source(log)
	if err != nil {
		return err
	}
	frags, err := f.fragments(log)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Before anything makes an HTTP client: they take their tracing transport then.
	shutdownTracing, err := tracing.Setup(ctx, version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing traces", "error", err.Error())
		}
	}()
	tracing.TrustRequestHeaders = f.traceTrustHeaders
	if tracing.Enabled() {
		log.Info("tracing on", "exporter", "otlp", "trust_request_headers", f.traceTrustHeaders)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.BuildInfo(version, runtime.Version())
	// The engine starts with no policy: until one is applied it is not ready and
	// denies everything.
	if f.logAllows < 0 || f.logAllows > 1 {
		return usageErr("--log-allows wants a fraction from 0 to 1, got %v", f.logAllows)
	}
	if f.denyLogsPerSecond == 0 || f.denyLogsPerSecond < -1 {
		return usageErr("--log-denies-per-second wants a positive number, or -1 for no cap")
	}
	e := engine.New(engine.Config{Metrics: m, Log: log, LogAllows: f.logAllows, DenyLogsPerSecond: f.denyLogsPerSecond,
		AnswerBytes: answerBytes(f.cacheBytes)})
	rcfg := reload.Config{
		Engine: e, Metrics: m, Log: log,
		Pool:  jwkscache.NewPool(ctx, jwkscache.PoolConfig{Metrics: m}),
		Feeds: revocation.NewPool(ctx, revocation.PoolConfig{Metrics: m}),
	}
	if f.cacheEntries > 0 {
		// One cache for the process: a policy reload keeps the tokens of unchanged issuers warm.
		cache := token.NewCache(token.CacheConfig{MaxEntries: f.cacheEntries, MaxBytes: f.cacheBytes})
		rcfg.Verifier.Cache = cache
		m.TokenCache(func() metrics.TokenCacheStats {
			st := cache.Stats()
			return metrics.TokenCacheStats{Hits: st.Hits, Misses: st.Misses, Evictions: st.Evictions, Entries: st.Entries, Bytes: st.Bytes}
		})
	}
	r, err := reload.New(rcfg)
	if err != nil {
		return err
	}
	tlsSrv, err := f.loadTLS(log, m)
	if err != nil {
		return err
	}
	if tlsSrv != nil {
		go tlsSrv.Run(ctx)
	}
	scfg := server.Config{
		Engine: e, Metrics: m, Gatherer: reg, Log: log,
		GRPCAddr: f.grpcAddr, HTTPAddr: f.httpAddr, AdminAddr: f.adminAddr, Realm: f.realm,
		ShutdownDelay: f.shutdownDelay, ShutdownTimeout: f.shutdownTimeout, Pprof: f.pprof,
		TLS: tlsSrv, AdminTLS: f.adminTLS,
	}
	if frags != nil {
		scfg.Fragments = r.FragmentStatuses
	}
	srv, err := server.New(scfg)
	if err != nil {
		return err
	}
	// Serve at once (liveness); readiness stays false until a policy is in force and
	// every issuer's first JWKS fetch has answered. A source that fails ends the
	// process, after a graceful stop, with its error.
	sctx, failed := context.WithCancelCause(ctx)
	defer failed(nil)
	go func() {
		if err := r.Run(sctx, src); err != nil {
			log.Error("policy source failed; stopping", "error", err.Error())
			failed(fmt.Errorf("policy source: %w", err))
		}
	}()
	if frags != nil {
		go func() {
			if err := frags.Run(sctx, r); err != nil {
				log.Error("policy fragment source failed; stopping", "error", err.Error())
				failed(fmt.Errorf("policy fragments: %w", err))
			}
		}()
	}
	runErr := srv.Run(sctx)
	if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return runErr
}

// DefaultPolicy is the policy BETTER_AUTH_URL alone stands for: that issuer, every
// path needs a valid token, the default identity headers, CORS preflights pass.
func DefaultPolicy(betterAuthURL string) []byte {
	return fmt.Appendf(nil, `issuers:
  - betterAuthURL: %q
default: authenticated
cors: { allowPreflight: true }
`, betterAuthURL)
}

// answerBytes is the engine's budget for kept allow answers: a quarter of the
// token cache's (whose non-positive value means its default, and so ours).
func answerBytes(cacheBytes int) int {
	if cacheBytes <= 0 {
		return 0
	}
	return max(cacheBytes/4, 1)
}
