package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

	trivial, trivialFull *stack.Proc
	// trivialVerify is trivial verifying each token's Ed25519 signature.
	trivialVerify    *stack.Proc
	trivialAddr      map[*stack.Proc]string
	main, refreshing *stack.Extauthz
	// cold serves the cold runs alone, so that the tokens they leave cached do not
	// weigh on the warm runs' garbage collection.
	cold *stack.Extauthz
	// baseWarm and baseCold are main and cold run from the -baseline binary.
	baseWarm, baseCold *stack.Extauthz
	// revoking checks every token against a revocation feed (served here, empty),
	// the configuration of a deployment that wants sign-out within seconds.
	revoking  *stack.Extauthz
	feed      *httptest.Server
	feedPolls atomic.Int64
	revToken  string
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
	e.trivialAddr = map[*stack.Proc]string{}
	if e.trivial, err = e.startTrivial("trivial"); err != nil {
		return err
	}
	if e.trivialFull, err = e.startTrivial("trivial-full", "-full-response"); err != nil {
		return err
	}
	var pub ed25519.PublicKey
	if err := e.key.JWK().Raw(&pub); err != nil {
		return err
	}
	if e.trivialVerify, err = e.startTrivial("trivial-verify", "-ed25519", base64.RawURLEncoding.EncodeToString(pub)); err != nil {
		return err
	}
	if e.main, err = e.startExtauthz("5m", nil); err != nil {
		return err
	}
	if e.refreshing, err = e.startExtauthz("1s", nil); err != nil {
		return err
	}
	if e.cold, err = e.startExtauthz("5m", nil); err != nil {
		return err
	}
	if *baseline != "" {
		if e.baseWarm, err = e.startBinary(*baseline, e.policy("5m", ""), nil); err != nil {
			return err
		}
		if e.baseCold, err = e.startBinary(*baseline, e.policy("5m", ""), nil); err != nil {
			return err
		}
	}
	if err := e.startFeed(); err != nil {
		return err
	}
	if e.revoking, err = e.startExtauthzDoc(e.policy("5m", fmt.Sprintf(`
    revocation: { feedURL: %s, secretFile: %s, requireSession: true }`, e.feed.URL, e.dir+"/feed-secret")), nil); err != nil {
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
	for _, s := range []*stack.Extauthz{e.main, e.refreshing, e.baseWarm} {
		if s == nil {
			continue
		}
		if err := mustAllow(s.GRPC, e.warmToken); err != nil {
			return err
		}
	}
	claims := tokentest.Claims(e.issuer, "user-rev", uuid, time.Now())
	claims["sid"] = "bench-session"
	e.revToken = e.key.Sign(claims, nil)
	return mustAllow(e.revoking.GRPC, e.revToken)
}

// startFeed serves an empty revocation feed, as Better Auth's plugin does when
// nobody has signed out: every poll is a full round trip that changes nothing.
func (e *env) startFeed() error {
	const secret = "bench-feed-secret-0123456789abcdef0123"
	if err := os.WriteFile(e.dir+"/feed-secret", []byte(secret), 0o600); err != nil {
		return err
	}
	e.feed = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		e.feedPolls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"cursor":"0","entries":[],"more":false}`)
	}))
	return nil
}

func (e *env) stop() {
	for _, p := range e.procs {
		p.Stop()
	}
	if e.jwks != nil {
		e.jwks.Close()
	}
	if e.feed != nil {
		e.feed.Close()
	}
}

func (e *env) mint(i int) string {
	return e.key.Sign(tokentest.Claims(e.issuer, fmt.Sprintf("user-%d", i), uuid, time.Now()), nil)
}

func (e *env) startTrivial(name string, args ...string) (*stack.Proc, error) {
	port, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.Start(e.dir, name, nil, append([]string{*trivial, "-addr", addr}, args...)...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	running.add(p)
	e.trivialAddr[p] = addr
	return p, stack.WaitTCP(p, addr, 15*time.Second)
}

// policy is the benchmark policy: the owner rule on /api/{user_id}/tasks and the
// default identity headers, with the given JWKS refresh interval and more of the
// issuer's settings.
func (e *env) policy(refresh, issuerExtra string) string {
	return fmt.Sprintf(`issuers:
  - betterAuthURL: %s
    refreshInterval: %s%s
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
`, e.issuer, refresh, issuerExtra)
}

func (e *env) startExtauthz(refresh string, args []string, environ ...string) (*stack.Extauthz, error) {
	return e.startExtauthzDoc(e.policy(refresh, ""), args, environ...)
}

func (e *env) startExtauthzDoc(doc string, args []string, environ ...string) (*stack.Extauthz, error) {
	return e.startBinary(*extauthz, doc, args, environ...)
}

func (e *env) startBinary(bin, doc string, args []string, environ ...string) (*stack.Extauthz, error) {
	if *serverEnv != "" {
		environ = append(strings.Split(*serverEnv, ","), environ...)
	}
	s, err := stack.StartExtauthz(stack.Tools{Extauthz: bin}, e.dir, fmt.Sprintf("extauthz-%d", len(e.procs)), doc,
		stack.ExtauthzOptions{Env: environ, Args: append([]string{"--admin-pprof"}, args...), LogLevel: "error"})
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, s.Proc)
	running.add(s.Proc)
	return s, nil
}

// variants are the load runs of one round, in the order they alternate. Each
// measures the server's CPU time per call too; with -profile, the first round's
// warm and cold runs also save a CPU profile of extauthz.
func (e *env) variants() ([]variant, error) {
	warm, cold, err := e.writeRequests()
	if err != nil {
		return nil, err
	}
	warmRev := filepath.Join(e.dir, "warm-rev.json")
	if err := writeJSON(warmRev, request(e.revToken)); err != nil {
		return nil, err
	}
	timed := func(pid int, addr, data string, extra ...string) func(int) (result, error) {
		return func(int) (result, error) {
			return withCPU(pid, func() (result, error) {
				return runGHZ(e.protoset, addr, data, append([]string{"-z", duration.String()}, extra...)...)
			})
		}
	}
	trivial := func(p *stack.Proc) func(int) (result, error) { return timed(p.Pid(), e.trivialAddr[p], warm) }
	profiled := func(s *stack.Extauthz, name string, secs time.Duration, run func(int) (result, error)) func(int) (result, error) {
		return func(r int) (result, error) {
			if *profile == "" || r > 0 {
				return run(r)
			}
			prof := make(chan error, 1)
			go func() { prof <- saveProfile("http://"+s.Admin, filepath.Join(*profile, name+".pprof"), secs) }()
			res, err := run(r)
			if perr := <-prof; err == nil {
				err = perr
			}
			return res, err
		}
	}
	vs := []variant{
		{"trivial", trivial(e.trivial)},
		{"trivial+", trivial(e.trivialFull)},
		{"warm", profiled(e.main, "warm", *duration-time.Second, timed(e.main.Proc.Pid(), e.main.GRPC, warm))},
		{"trivial-verify", func(r int) (result, error) {
			return withCPU(e.trivialVerify.Pid(), func() (result, error) {
				return runGHZ(e.protoset, e.trivialAddr[e.trivialVerify], cold[r], "-n", fmt.Sprint(*coldCalls))
			})
		}},
		{"cold", profiled(e.cold, "cold", *duration/2, func(r int) (result, error) {
			return withCPU(e.cold.Proc.Pid(), func() (result, error) {
				return runGHZ(e.protoset, e.cold.GRPC, cold[r], "-n", fmt.Sprint(*coldCalls))
			})
		})},
		{"refresh", timed(e.refreshing.Proc.Pid(), e.refreshing.GRPC, warm)},
		{"warm-tls", timed(e.tlsMain.Proc.Pid(), e.tlsMain.GRPC, warm, e.tlsGHZ...)},
		{"warm-rev", timed(e.revoking.Proc.Pid(), e.revoking.GRPC, warmRev)},
	}
	if e.baseWarm != nil {
		vs = append(vs, variant{"warm-base", timed(e.baseWarm.Proc.Pid(), e.baseWarm.GRPC, warm)},
			variant{"cold-base", func(r int) (result, error) {
				return withCPU(e.baseCold.Proc.Pid(), func() (result, error) {
					return runGHZ(e.protoset, e.baseCold.GRPC, cold[r], "-n", fmt.Sprint(*coldCalls))
				})
			}})
	}
	return vs, nil
}

// checkAllAllowed fails the run when extauthz denied any check (a fast deny would
// flatter it), and returns how often the refreshing variant fetched the JWKS.
func (e *env) checkAllAllowed() (float64, error) {
	for _, s := range []*stack.Extauthz{e.main, e.cold, e.refreshing, e.tlsMain, e.revoking, e.baseWarm, e.baseCold} {
		if s == nil {
			continue
		}
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
