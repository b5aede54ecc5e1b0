package main

import (
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tlstest"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// env is what every server of the run shares: a temp dir, the issuer (one EdDSA
// key, its JWKS on loopback) and the processes under load.
type env struct {
	dir, issuer string
	key         *tokentest.Key
	jwks        *tokentest.JWKSServer
	warmToken   string
	protoset    string

	trivial, trivialFull string // gRPC addresses
	main, refreshing     *stack.Extauthz
	// tlsMain is main's twin with mTLS on; tlsGHZ are ghz's flags for it.
	tlsMain *stack.Extauthz
	tlsGHZ  []string
	procs   []*stack.Proc
}

func newEnv(dir string) (*env, error) {
	e := &env{dir: dir, key: tokentest.NewKey(jwa.EdDSA, "bench-key")}
	if err := e.start(); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

func (e *env) start() error {
	e.jwks = tokentest.StartJWKSServer(tokentest.JWKS(e.key))
	e.issuer = e.jwks.URL
	var err error
	e.protoset = e.dir + "/authz.protoset"
	if err := writeProtoset(e.protoset); err != nil {
		return err
	}
	if e.trivial, err = e.startTrivial("trivial"); err != nil {
		return err
	}
	if e.trivialFull, err = e.startTrivial("trivial-full", "-full-response"); err != nil {
		return err
	}
	if e.main, err = e.startExtauthz("5m", nil); err != nil {
		return err
	}
	if e.refreshing, err = e.startExtauthz("1s", nil); err != nil {
		return err
	}
	ca := tlstest.NewCA("loadbench CA")
	srvCert, srvKey := ca.Server("extauthz", tlstest.SANs{DNS: []string{"extauthz.bench"}, IPs: []string{"127.0.0.1"}}).Write(e.dir, "server")
	cliCert, cliKey := ca.Client("ghz", tlstest.SANs{DNS: []string{"ghz.bench"}}).Write(e.dir, "client")
	caFile := ca.Write(e.dir, "ca")
	if e.tlsMain, err = e.startExtauthz("5m", []string{"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-client-ca-file", caFile}); err != nil {
		return err
	}
	e.tlsGHZ = []string{"--cacert", caFile, "--cert", cliCert, "--key", cliKey, "--cname", "extauthz.bench"}
	e.warmToken = e.mint(-1)
	for _, s := range []*stack.Extauthz{e.main, e.refreshing} {
		if err := mustAllow(s.GRPC, e.warmToken); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) stop() {
	for _, p := range e.procs {
		p.Stop()
	}
	if e.jwks != nil {
		e.jwks.Close()
	}
}

func (e *env) mint(i int) string {
	return e.key.Sign(tokentest.Claims(e.issuer, fmt.Sprintf("user-%d", i), uuid, time.Now()), nil)
}

func (e *env) startTrivial(name string, args ...string) (string, error) {
	port, err := testkit.FreePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.Start(e.dir, name, nil, append([]string{*trivial, "-addr", addr}, args...)...)
	if err != nil {
		return "", err
	}
	e.procs = append(e.procs, p)
	return addr, stack.WaitTCP(p, addr, 15*time.Second)
}

// startExtauthz serves the benchmark policy: the owner rule on /api/{user_id}/tasks
// and the default identity headers, with the given JWKS refresh interval.
func (e *env) startExtauthz(refresh string, args []string, environ ...string) (*stack.Extauthz, error) {
	doc := fmt.Sprintf(`issuers:
  - betterAuthURL: %s
    refreshInterval: %s
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
`, e.issuer, refresh)
	s, err := stack.StartExtauthz(stack.Tools{Extauthz: *extauthz}, e.dir, fmt.Sprintf("extauthz-%s-%d", refresh, len(e.procs)), doc,
		stack.ExtauthzOptions{Env: environ, Args: append([]string{"--admin-pprof"}, args...), LogLevel: "error"})
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, s.Proc)
	return s, nil
}

// variants are the load runs of one round, in the order they alternate.
func (e *env) variants() ([]variant, error) {
	warm, cold, err := e.writeRequests()
	if err != nil {
		return nil, err
	}
	timed := func(addr string) func(int) (result, error) {
		return func(int) (result, error) { return runGHZ(e.protoset, addr, warm, "-z", duration.String()) }
	}
	return []variant{
		{"trivial", timed(e.trivial)},
		{"trivial+", timed(e.trivialFull)},
		{"warm", func(r int) (result, error) {
			if *profile == "" || r > 0 {
				return timed(e.main.GRPC)(r)
			}
			prof := make(chan error, 1)
			go func() { prof <- saveProfile("http://"+e.main.Admin, *profile, *duration-time.Second) }()
			res, err := timed(e.main.GRPC)(r)
			if perr := <-prof; err == nil {
				err = perr
			}
			return res, err
		}},
		{"cold", func(r int) (result, error) {
			return runGHZ(e.protoset, e.main.GRPC, cold[r], "-n", fmt.Sprint(*coldCalls))
		}},
		{"refresh", timed(e.refreshing.GRPC)},
		{"warm-tls", func(int) (result, error) {
			return runGHZ(e.protoset, e.tlsMain.GRPC, warm, append([]string{"-z", duration.String()}, e.tlsGHZ...)...)
		}},
	}, nil
}

// checkAllAllowed fails the run when extauthz denied any check (a fast deny would
// flatter it), and returns how often the refreshing variant fetched the JWKS.
func (e *env) checkAllAllowed() (float64, error) {
	for _, s := range []*stack.Extauthz{e.main, e.refreshing, e.tlsMain} {
		denies, err := s.Metric("extauthz_decisions_total", `decision="deny"`)
		if err != nil {
			return 0, err
		}
		if denies != 0 {
			return 0, fmt.Errorf("extauthz denied %v checks during the benchmark", denies)
		}
	}
	return e.refreshing.Metric("extauthz_jwks_refresh_total")
}
