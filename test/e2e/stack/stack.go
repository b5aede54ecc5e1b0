package stack

import (
	"fmt"
	"strings"
)

// Stack is the whole chain: Better Auth → (Envoy | nginx) → extauthz → FastAPI.
type Stack struct {
	// BetterAuth issues the users' tokens.
	BetterAuth *BetterAuth
	// Foreign is a second Better Auth that is a configured issuer, but whose tokens
	// carry the wrong audience and expire in 2 s (for the 401 scenarios).
	Foreign *BetterAuth
	// Backend is the FastAPI example; Recorder sits in front of it.
	Backend  *Proc
	Recorder *Recorder
	Extauthz *Extauthz
	// Proxies run the shipped examples in front of the Recorder.
	Proxies

	procs []*Proc
}

// Proxies are the shipped proxy examples in front of one extauthz: Envoy over
// gRPC, nginx auth_request, Envoy's HTTP mode and Caddy's forward_auth.
type Proxies struct {
	Envoy     *Envoy
	Nginx     *Nginx
	EnvoyHTTP *Envoy
	Caddy     *Caddy
}

// URLs are the proxies' URLs by name: envoy, nginx, envoy-http and caddy.
func (p Proxies) URLs() map[string]string {
	return map[string]string{"envoy": p.Envoy.URL, "nginx": p.Nginx.URL, "envoy-http": p.EnvoyHTTP.URL, "caddy": p.Caddy.URL}
}

// startProxies starts every shipped proxy example in front of backend, asking
// ext, and appends each process to procs as it starts.
func startProxies(t Tools, dir, prefix string, ext *Extauthz, backend string, procs *[]*Proc) (p Proxies, err error) {
	if p.Envoy, err = StartEnvoy(t, dir, prefix+"envoy", ext.GRPC, backend); err != nil {
		return p, err
	}
	*procs = append(*procs, p.Envoy.Proc)
	if p.Nginx, err = StartNginx(t, dir, prefix+"nginx", ext.HTTP, backend); err != nil {
		return p, err
	}
	*procs = append(*procs, p.Nginx.Proc)
	if p.EnvoyHTTP, err = StartEnvoyHTTP(t, dir, prefix+"envoy-http", ext.HTTP, backend); err != nil {
		return p, err
	}
	*procs = append(*procs, p.EnvoyHTTP.Proc)
	if p.Caddy, err = StartCaddy(t, dir, prefix+"caddy", ext.HTTP, backend); err != nil {
		return p, err
	}
	*procs = append(*procs, p.Caddy.Proc)
	return p, nil
}

// Policy returns the end-to-end policy for the given Better Auth URLs: the first is
// the main issuer, the second one expects the audience https://api.example.com.
func Policy(main, foreign string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "issuers:\n  - betterAuthURL: %s\n", main)
	if foreign != "" {
		fmt.Fprintf(&b, "  - betterAuthURL: %s\n    audiences: [\"https://api.example.com\"]\n", foreign)
	}
	b.WriteString(`identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: health
    paths: ["/healthz"]
    public: true
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
default: deny
cors: { allowPreflight: true }
leeway: 1s
`)
	return b.String()
}

// RevocationPolicy is the own-tasks policy for the Better Auth at url, with the
// given revocation block (YAML flow style), the session id as a header too, and an
// org rule for the example's orgs claim.
func RevocationPolicy(url, revocation string) string {
	return fmt.Sprintf(`issuers:
  - betterAuthURL: %s
    revocation: %s
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email, x-session-id: sid }
rules:
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
  - name: org-admin
    paths: ["/orgs/{org_id}/**"]
    org: { param: org_id, roles: [owner, admin] }
default: deny
`, url, revocation)
}

// Up starts the stack in dir. With foreign, it also starts the second Better Auth.
func Up(t Tools, dir string, foreign bool) (s *Stack, err error) {
	s = &Stack{}
	defer func() {
		if err != nil {
			s.Down()
		}
	}()
	type result struct {
		ba  *BetterAuth
		err error
	}
	// Better Auth takes a second or two to start: start both at once.
	mainc, foreignc := make(chan result, 1), make(chan result, 1)
	go func() {
		ba, err := StartBetterAuth(t, dir, "better-auth", BetterAuthOptions{})
		mainc <- result{ba, err}
	}()
	go func() {
		if !foreign {
			foreignc <- result{}
			return
		}
		ba, err := StartBetterAuth(t, dir, "better-auth-foreign", BetterAuthOptions{Expiration: "2s", Audience: "https://wrong.example.com"})
		foreignc <- result{ba, err}
	}()
	api, apiAddr, apiErr := StartFastAPI(t, dir, "fastapi")
	m, f := <-mainc, <-foreignc
	for _, r := range []result{m, f} {
		if r.ba != nil {
			s.procs = append(s.procs, r.ba.Proc)
		}
	}
	if api != nil {
		s.procs = append(s.procs, api)
	}
	if m.err != nil {
		return s, m.err
	}
	if f.err != nil {
		return s, f.err
	}
	if apiErr != nil {
		return s, apiErr
	}
	s.BetterAuth, s.Foreign, s.Backend = m.ba, f.ba, api

	if s.Recorder, err = StartRecorder(apiAddr); err != nil {
		return s, err
	}
	foreignURL := ""
	if s.Foreign != nil {
		foreignURL = s.Foreign.URL
	}
	if s.Extauthz, err = StartExtauthz(t, dir, "extauthz", Policy(s.BetterAuth.URL, foreignURL), ExtauthzOptions{}); err != nil {
		return s, err
	}
	s.procs = append(s.procs, s.Extauthz.Proc)
	s.Proxies, err = startProxies(t, dir, "", s.Extauthz, s.Recorder.Addr, &s.procs)
	return s, err
}

// Down stops everything Up started, proxies first.
func (s *Stack) Down() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	if s.Recorder != nil {
		s.Recorder.Close()
	}
}

// Chain is a second set of extauthz, Envoy and nginx, with its own policy, in front
// of the same backend: for scenarios that need a policy other than the stack's.
type Chain struct {
	Extauthz *Extauthz
	Proxies
	procs []*Proc
}

// StartChain serves policyDoc through the shipped Envoy and nginx examples to the
// backend at backend (host:port). Stop it with Stop.
func StartChain(t Tools, dir, name, policyDoc, backend string) (c *Chain, err error) {
	c = &Chain{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if c.Extauthz, err = StartExtauthz(t, dir, name+"-extauthz", policyDoc, ExtauthzOptions{}); err != nil {
		return c, err
	}
	c.procs = append(c.procs, c.Extauthz.Proc)
	c.Proxies, err = startProxies(t, dir, name+"-", c.Extauthz, backend, &c.procs)
	return c, err
}

// Stop stops the chain's processes, proxies first.
func (c *Chain) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].Stop()
	}
}
