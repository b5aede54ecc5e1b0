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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/server"
)

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgFile       = fs.String("config", "", "policy file (YAML)")
		grpcAddr      = fs.String("grpc-addr", ":9001", "Envoy ext_authz gRPC listen address")
		httpAddr      = fs.String("http-addr", ":9002", "HTTP check listen address (Envoy HTTP, nginx, Traefik)")
		adminAddr     = fs.String("admin-addr", ":9003", "admin listen address (/healthz, /readyz, /metrics)")
		logLevel      = fs.String("log-level", "info", "debug, info, warn or error")
		realm         = fs.String("realm", "extauthz", "realm of WWW-Authenticate challenges")
		shutdownDelay = fs.Duration("shutdown-delay", 5*time.Second, "time readiness is false before the servers stop")
		shutdownTO    = fs.Duration("shutdown-timeout", 15*time.Second, "deadline for in-flight checks at shutdown")
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

	doc, source, err := policySource(*cfgFile)
	if err != nil {
		return err
	}
	p, err := policy.Load(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.BuildInfo(version, runtime.Version())
	pool := jwkscache.NewPool(ctx, m)
	e := engine.New(m, log)
	snap, caches, err := engine.Build(p, pool, log)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	pool.Retain(caches)
	e.Swap(snap)
	m.PolicyApplied(source, p.Hash)
	log.Info("policy loaded", "source", source, "hash", p.Hash, "issuers", len(p.Issuers), "rules", len(p.Rules))

	srv, err := server.New(server.Config{
		GRPCAddr: *grpcAddr, HTTPAddr: *httpAddr, AdminAddr: *adminAddr, Realm: *realm,
		ShutdownDelay: *shutdownDelay, ShutdownTimeout: *shutdownTO,
	}, e, m, reg, log)
	if err != nil {
		return err
	}
	// Readiness stays false until every issuer's first JWKS fetch has answered.
	return srv.Run(ctx)
}

// policySource returns the policy document: the --config file, or one derived from
// BETTER_AUTH_URL when no file is given.
func policySource(file string) ([]byte, string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("reading policy: %w", err)
		}
		return b, "file:" + file, nil
	}
	if u := os.Getenv("BETTER_AUTH_URL"); u != "" {
		return DefaultPolicy(u), "env:BETTER_AUTH_URL", nil
	}
	return nil, "", usageErr("give --config FILE (or EXTAUTHZ_CONFIG), or set BETTER_AUTH_URL")
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
