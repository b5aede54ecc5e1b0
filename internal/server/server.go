// Package server runs the three listeners of extauthz (gRPC ext_authz, HTTP check,
// admin) around one engine, and shuts them down in the order Kubernetes expects:
// readiness false first, then a drain, then a graceful stop with a deadline.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/tlsconf"
)

// MaxConnectionAge bounds a gRPC connection's life (with jitter, plus a 30 s grace
// for streams in flight).
const MaxConnectionAge = 10 * time.Minute

// DefaultShutdownTimeout bounds the graceful stop when Config sets none.
const DefaultShutdownTimeout = 15 * time.Second

// Config says what to serve, where to listen and how to stop.
type Config struct {
	// Engine decides every check; required.
	Engine *engine.Engine
	// Metrics may be nil (nothing recorded); Gatherer serves /metrics (an empty
	// registry when nil).
	Metrics  *metrics.Recorder
	Gatherer prometheus.Gatherer
	// Log defaults to slog.Default().
	Log *slog.Logger
	// GRPCAddr, HTTPAddr and AdminAddr are listen addresses (":0" picks a port).
	GRPCAddr, HTTPAddr, AdminAddr string
	// Realm for WWW-Authenticate challenges; authz.DefaultRealm when empty.
	Realm string
	// ShutdownDelay is how long readiness is false before the servers stop, so that
	// load balancers stop sending new requests first.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful stop; in-flight checks past it are cut.
	// DefaultShutdownTimeout when zero.
	ShutdownTimeout time.Duration
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin port.
	Pprof bool
	// TLS, when set, serves the gRPC and HTTP check listeners over TLS (and
	// requires client certificates if it has a client CA).
	TLS *tlsconf.Server
	// AdminTLS serves the admin listener over TLS too, with TLS's certificate and
	// no client certificate (probes and scrapers present none).
	AdminTLS bool
	// Fragments, when set, reports the policy fragments (waiting ones too) on
	// /debug/policy; *reload.Reloader's FragmentStatuses is one.
	Fragments func() ([]policy.FragmentStatus, <-chan struct{})
}

// Server is a running extauthz.
type Server struct {
	cfg      Config
	engine   *engine.Engine
	metrics  *metrics.Recorder
	gatherer prometheus.Gatherer
	log      *slog.Logger
	draining atomic.Bool
	health   *health.Server

	grpcDoor *authz.GRPC
	httpDoor *authz.HTTP

	grpcLn, httpLn, adminLn net.Listener
}

// New binds the three listeners (so that ":0" ports are known before Run).
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("server: Engine is required")
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Realm == "" {
		cfg.Realm = authz.DefaultRealm
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.AdminTLS && cfg.TLS == nil {
		return nil, errors.New("server: AdminTLS needs TLS")
	}
	s := &Server{cfg: cfg, engine: cfg.Engine, metrics: cfg.Metrics, gatherer: cfg.Gatherer, log: cfg.Log, health: health.NewServer()}
	front := authz.Config{Engine: cfg.Engine, Realm: cfg.Realm}
	var err error
	if s.grpcDoor, err = authz.NewGRPC(front); err != nil {
		return nil, err
	}
	if s.httpDoor, err = authz.NewHTTP(front); err != nil {
		return nil, err
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc listener: %w", err)
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		s.grpcLn.Close()
		return nil, fmt.Errorf("http listener: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		s.grpcLn.Close()
		s.httpLn.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	return s, nil
}

// Addrs returns the bound gRPC, HTTP and admin addresses.
func (s *Server) Addrs() (grpcAddr, httpAddr, adminAddr string) {
	return s.grpcLn.Addr().String(), s.httpLn.Addr().String(), s.adminLn.Addr().String()
}

// Ready reports what /readyz reports.
func (s *Server) Ready() bool { return !s.draining.Load() && s.engine.Ready() }

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	// Connections are recycled every few minutes (a GOAWAY, then new streams on a
	// new connection), so a client certificate or CA removed by a reload stops
	// working within MaxConnectionAge, and new replicas get their share.
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(authz.Recover(s.engine)),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: MaxConnectionAge, MaxConnectionAgeGrace: 30 * time.Second})}
	grpcLn, httpLn, adminLn := s.grpcLn, s.httpLn, s.adminLn
	if s.cfg.TLS != nil {
		creds := credentials.NewTLS(s.cfg.TLS.TLSConfig("h2"))
		opts = append(opts, grpc.Creds(countingCreds{TransportCredentials: creds, metrics: s.metrics, log: s.log}))
		httpLn = tls.NewListener(httpLn, s.cfg.TLS.TLSConfig("h2", "http/1.1"))
		if s.cfg.AdminTLS {
			adminLn = tls.NewListener(adminLn, s.cfg.TLS.ServerOnlyTLSConfig("http/1.1"))
		}
	}
	gs := authz.NewServer(s.grpcDoor, opts...)
	healthpb.RegisterHealthServer(gs, s.health)

	checkSrv := &http.Server{
		Handler:           s.httpDoor,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          handshakeLog("http", s.metrics, s.log),
	}
	adminSrv := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: handshakeLog("admin", s.metrics, s.log)}

	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(grpcLn) }()
	go func() { errc <- checkSrv.Serve(httpLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	g, h, a := s.Addrs()
	s.log.Info("listening", "grpc", g, "http", h, "admin", a, "tls", s.cfg.TLS != nil, "admin_tls", s.cfg.AdminTLS)

	stopHealth := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.trackReadiness(stopHealth) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("server stopped: %w", err)
	}

	s.draining.Store(true)
	s.health.Shutdown()
	s.metrics.SetReady(false)
	if runErr == nil && s.cfg.ShutdownDelay > 0 {
		s.log.Info("shutting down: not ready, draining", "delay", s.cfg.ShutdownDelay.String())
		time.Sleep(s.cfg.ShutdownDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	_ = checkSrv.Shutdown(sctx)
	select {
	case <-done:
	case <-sctx.Done():
		gs.Stop()
	}
	_ = adminSrv.Shutdown(sctx)
	close(stopHealth)
	wg.Wait()
	s.log.Info("stopped")
	return runErr
}

// trackReadiness mirrors readiness into the gRPC health service and the metric.
func (s *Server) trackReadiness(stop <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := -1
	for {
		r := 0
		if s.Ready() {
			r = 1
		}
		if r != last && !s.draining.Load() {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if r == 1 {
				st = healthpb.HealthCheckResponse_SERVING
			}
			s.health.SetServingStatus("", st)
			s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
			s.metrics.SetReady(r == 1)
			last = r
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /debug/policy", s.debugPolicy)
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// policyState is what /debug/policy shows of the policy in force: names, hashes
// and hosts, never a URL with its query, a secret file's path or a claim value.
type policyState struct {
	Hash      string                  `json:"hash"`
	Issuers   []issuerState           `json:"issuers"`
	Rules     []ruleState             `json:"rules"`
	Fragments []policy.FragmentStatus `json:"fragments"`
}

type issuerState struct {
	Issuer   string   `json:"issuer"`
	Fragment string   `json:"fragment,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
}

type ruleState struct {
	Name   string `json:"name"`
	Public bool   `json:"public,omitempty"`
	Shadow bool   `json:"shadow,omitempty"`
}

func (s *Server) debugPolicy(w http.ResponseWriter, _ *http.Request) {
	snap := s.engine.Current()
	if snap == nil {
		http.Error(w, "no policy in force", http.StatusServiceUnavailable)
		return
	}
	p := snap.Policy
	st := policyState{Hash: p.Hash, Issuers: []issuerState{}, Rules: []ruleState{}, Fragments: p.Fragments}
	for _, is := range p.Issuers {
		st.Issuers = append(st.Issuers, issuerState{Issuer: is.Issuer, Fragment: is.Fragment, Hosts: is.Hosts})
	}
	for _, r := range p.Rules {
		st.Rules = append(st.Rules, ruleState{Name: r.Name, Public: r.Public, Shadow: r.Shadow})
	}
	if s.cfg.Fragments != nil {
		st.Fragments, _ = s.cfg.Fragments()
	}
	if st.Fragments == nil {
		st.Fragments = []policy.FragmentStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}
