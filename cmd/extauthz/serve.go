package main

import (
	"context"
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

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/k8s"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/server"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgFile       = fs.String("config", "", "policy file (YAML), watched for changes")
		cmRef         = fs.String("policy-configmap", "", "NAMESPACE/NAME of a ConfigMap holding the policy, watched through the API server")
		cmKey         = fs.String("policy-key", k8s.DefaultKey, "key of the policy in the ConfigMap")
		kubeconfig    = fs.String("kubeconfig", "", "kubeconfig for --policy-configmap (default: in-cluster service account)")
		grpcAddr      = fs.String("grpc-addr", ":9001", "Envoy ext_authz gRPC listen address")
		httpAddr      = fs.String("http-addr", ":9002", "HTTP check listen address (Envoy HTTP, nginx, Traefik)")
		adminAddr     = fs.String("admin-addr", ":9003", "admin listen address (/healthz, /readyz, /metrics)")
		logLevel      = fs.String("log-level", "info", "debug, info, warn or error")
		realm         = fs.String("realm", "extauthz", "realm of WWW-Authenticate challenges")
		shutdownDelay = fs.Duration("shutdown-delay", 5*time.Second, "time readiness is false before the servers stop")
		shutdownTO    = fs.Duration("shutdown-timeout", 15*time.Second, "deadline for in-flight checks at shutdown")
		pprofOn       = fs.Bool("admin-pprof", false, "serve Go's /debug/pprof/ on the admin port (profiling; keep the admin port private)")
		cacheEntries  = fs.Int("token-cache-entries", token.DefaultCacheEntries, "verified tokens to remember (0 disables the cache)")
		cacheBytes    = fs.Int("token-cache-bytes", token.DefaultCacheBytes, "memory budget of the verified-token cache")
	)
	if err := envDefaults(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageErr("--log-level: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	if *cfgFile != "" && *cmRef != "" {
		return usageErr("give --config or --policy-configmap, not both")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.BuildInfo(version, runtime.Version())
	pool := jwkscache.NewPool(ctx, m)
	// The engine starts with no policy: until one is applied it is not ready and
	// denies everything.
	e := engine.New(m, log)
	r := &reload.Reloader{Engine: e, Pool: pool, Metrics: m, Log: log}
	if *cacheEntries > 0 {
		// One cache for the process: a policy reload keeps the tokens of unchanged issuers warm.
		cache := token.NewCache(*cacheEntries, *cacheBytes)
		r.VerifierOptions = append(r.VerifierOptions, token.WithCache(cache))
		m.TokenCache(func() metrics.TokenCacheStats {
			st := cache.Stats()
			return metrics.TokenCacheStats{Hits: st.Hits, Misses: st.Misses, Evictions: st.Evictions, Entries: st.Entries, Bytes: st.Bytes}
		})
	}

	var startSource func() error
	switch {
	case *cmRef != "":
		ns, name, ok := strings.Cut(*cmRef, "/")
		if !ok || ns == "" || name == "" {
			return usageErr("--policy-configmap wants NAMESPACE/NAME, got %q", *cmRef)
		}
		cfg, err := k8s.RESTConfig(*kubeconfig)
		if err != nil {
			return fmt.Errorf("kubernetes config: %w", err)
		}
		w := &k8s.Watcher{Namespace: ns, Name: name, Key: *cmKey, Reloader: r, Log: log}
		startSource = func() error {
			go func() {
				if err := w.Run(ctx, cfg); err != nil {
					log.Error("policy ConfigMap watch ended", "error", err.Error())
				}
			}()
			return nil
		}
	case *cfgFile != "":
		startSource = func() error { return r.WatchFile(ctx, *cfgFile) }
	case os.Getenv("BETTER_AUTH_URL") != "":
		startSource = func() error {
			_, _, err := r.Apply(ctx, "env:BETTER_AUTH_URL", DefaultPolicy(os.Getenv("BETTER_AUTH_URL")))
			return err
		}
	default:
		return usageErr("give --config FILE, --policy-configmap NAMESPACE/NAME, or set BETTER_AUTH_URL")
	}

	srv, err := server.New(server.Config{
		GRPCAddr: *grpcAddr, HTTPAddr: *httpAddr, AdminAddr: *adminAddr, Realm: *realm,
		ShutdownDelay: *shutdownDelay, ShutdownTimeout: *shutdownTO, Pprof: *pprofOn,
	}, e, m, reg, log)
	if err != nil {
		return err
	}
	// Serve at once (liveness); readiness stays false until a policy is in force and
	// every issuer's first JWKS fetch has answered.
	go func() {
		if err := startSource(); err != nil {
			log.Error("policy source", "error", err.Error())
		}
	}()
	return srv.Run(ctx)
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
