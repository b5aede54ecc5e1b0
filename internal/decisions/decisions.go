// Package decisions reads decision tables, a policy with requests and the
// decisions they must get, and checks them against the real engine. Tokens are
// described by their claims and signed with a key the table's engine trusts, so a
// policy's behaviour can be tested without Better Auth running.
//
// A table, in YAML:
//
//	policy: |                  # the policy document under test
//	  issuers: [{betterAuthURL: https://auth.example.com}]
//	  rules: [...]
//	now: 2027-01-15T08:00:00Z  # optional: when tokens are issued and checked
//	unavailable: [https://down.example.com]  # optional: issuers whose JWKS is down
//	cases:
//	  - name: Alice reads her tasks
//	    request: {method: GET, host: api.example.com, path: /api/6639…/tasks}
//	    token: {claims: {sub: alice, uuid: 6639…}}
//	    want: {decision: allow, rule: own-tasks, setHeaders: {x-user-uuid: 6639…}}
//
// A deny must name its reason, so that a deny for another reason (a forgotten
// field, a typo in a claim) does not pass unnoticed. See Case for every field.
package decisions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// DefaultNow is when tokens are issued and checked if a table names no time.
var DefaultNow = time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC)

// KID is the key id of the key a table's tokens are signed with.
const KID = "decisions-key"

// Table is one decision table.
type Table struct {
	// Policy is the policy document under test.
	Policy string `yaml:"policy"`
	// PolicyFile names a file holding it instead, relative to the table's own
	// file (see ReadFiles).
	PolicyFile string `yaml:"policyFile"`
	// Fragments are policy fragments composed with the policy, as a
	// --policy-selector ConfigMap would bring them.
	Fragments []Fragment `yaml:"fragments"`
	// Now is when tokens are issued and checked; DefaultNow when zero.
	Now time.Time `yaml:"now"`
	// Unavailable issuers have a JWKS that is down: their tokens get jwks_unavailable.
	Unavailable []string `yaml:"unavailable"`
	// Revocation gives issuers a revocation feed in a known state, by issuer.
	Revocation map[string]Revoked `yaml:"revocation"`
	Cases      []Case             `yaml:"cases"`
}

// Fragment is one policy fragment of a table.
type Fragment struct {
	// ID is the fragment's name in rule names: namespace/name for a ConfigMap.
	ID string `yaml:"id"`
	// Policy is the fragment document, or PolicyFile the file that holds it.
	Policy     string `yaml:"policy"`
	PolicyFile string `yaml:"policyFile"`
}

// Revoked is what an issuer's revocation feed has said.
type Revoked struct {
	// Sessions that were signed out or revoked (sid values).
	Sessions []string `yaml:"sessions"`
	// Users whose every session was revoked, with when: a duration from now ("-1m").
	Users map[string]string `yaml:"users"`
	// Bans: user ids, with when the ban ends (a duration from now), "" for never.
	Bans map[string]string `yaml:"bans"`
	// Stale: the feed has not answered for longer than its maxStale.
	Stale bool `yaml:"stale"`
}

// Case is one request and the decision it must get.
type Case struct {
	Name    string  `yaml:"name"`
	Request Request `yaml:"request"`
	// Token, when set, is sent as a Bearer token.
	Token *Token `yaml:"token"`
	Want  Want   `yaml:"want"`
}

// Request is the request as the proxy forwards it.
type Request struct {
	Method string `yaml:"method"` // GET when empty
	// Host is localhost when absent, as in policy explain; host: "" sends none.
	Host *string `yaml:"host"`
	// Path as sent, query string included.
	Path string `yaml:"path"`
	// Headers the client sent besides Authorization (Origin,
	// Access-Control-Request-Method, method overrides, x_user_id …).
	Headers map[string]string `yaml:"headers"`
	// Proxy is envoy (the default), nginx or traefik: the last two cannot remove
	// request headers, so smuggled ones are denied rather than stripped.
	Proxy string `yaml:"proxy"`
}

// Token describes the credential. With none of Raw, Authorization and Header set,
// it is a JWT with Claims signed by the table's key.
type Token struct {
	// Claims are added to the defaults: iss and aud (the policy's first issuer),
	// iat (now) and exp (now + 15m). exp, nbf and iat may be durations from now
	// ("-1h"). Omit lists default claims to leave out.
	Claims map[string]any `yaml:"claims"`
	Omit   []string       `yaml:"omit"`
	// Key is "" (the trusted key), "other" (same kid, another key: a bad signature)
	// or "unknown" (a kid the JWKS does not list).
	Key string `yaml:"key"`
	// Header replaces the JOSE header and leaves the signature garbage (alg
	// confusion: {alg: HS256}).
	Header map[string]any `yaml:"header"`
	// Raw is sent as the Bearer token as it is.
	Raw string `yaml:"raw"`
	// Authorization is sent as the whole header value ("Basic eDp5").
	Authorization string `yaml:"authorization"`
	// Oversize sends a Bearer token one byte longer than extauthz reads.
	Oversize bool `yaml:"oversize"`
	// Cookie sends the credential as Better Auth's session cookies instead: the
	// claims become the user of a signed session_data cookie cache (sid, when
	// given, the session's id), bound to a session_token cookie.
	Cookie *CookieToken `yaml:"cookie"`
}

// CookieToken shapes the session cookies of a Cookie token.
type CookieToken struct {
	// Prefix is the cookie prefix (default better-auth). The names carry
	// __Secure- when the issuer is https, as Better Auth writes them, unless Plain.
	Prefix string `yaml:"prefix"`
	Plain  bool   `yaml:"plain"`
	// SessionToken sent in session_token, when not the one session_data names
	// (to test the binding).
	SessionToken string `yaml:"sessionToken"`
	// SessionEnds is when the session ends, a duration from now (default 7 days).
	SessionEnds string `yaml:"sessionEnds"`
}

// Want is the decision a case must get; empty fields are not checked.
type Want struct {
	Decision string `yaml:"decision"` // allow or deny; required
	Status   int    `yaml:"status"`
	Reason   string `yaml:"reason"`
	Rule     string `yaml:"rule"`
	// Location of a sign-in redirect (302).
	Location string `yaml:"location"`
	// SetHeaders must all be set, to these values; NotSet must not be.
	SetHeaders map[string]string `yaml:"setHeaders"`
	NotSet     []string          `yaml:"notSet"`
	// RemoveHeaders must all be among the headers removed.
	RemoveHeaders []string `yaml:"removeHeaders"`
	// Shadow lists what shadow rules must have said; a shadow rule listed here
	// that did not match, or said otherwise, is a difference.
	Shadow []WantShadow `yaml:"shadow"`
	// NoShadow: no shadow rule may have matched.
	NoShadow bool `yaml:"noShadow"`
}

// WantShadow is a shadow rule's would-be decision: allow, deny (with its
// reason, which must match, as a case's own) or unknown (a credential only
// Better Auth can check, which a shadow rule does not call).
type WantShadow struct {
	Rule     string `yaml:"rule"`
	Decision string `yaml:"decision"`
	Reason   string `yaml:"reason"`
}

// Parse reads a table strictly: unknown fields are errors, as in policies.
func Parse(data []byte) (*Table, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var t Table
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("decision table is empty")
		}
		return nil, fmt.Errorf("decision table yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decision table yaml: more than one document")
	}
	if t.Now.IsZero() {
		t.Now = DefaultNow
	}
	if len(t.Cases) == 0 {
		return nil, errors.New("decision table has no cases")
	}
	if t.Policy != "" && t.PolicyFile != "" {
		return nil, errors.New("give policy or policyFile, not both")
	}
	for i, f := range t.Fragments {
		if f.ID == "" || (f.Policy == "") == (f.PolicyFile == "") {
			return nil, fmt.Errorf("fragments[%d]: give an id, and policy or policyFile", i)
		}
	}
	for i, c := range t.Cases {
		if c.Name == "" {
			return nil, fmt.Errorf("cases[%d]: name is required", i)
		}
		switch {
		case c.Want.Decision != "allow" && c.Want.Decision != "deny":
			return nil, fmt.Errorf("cases[%d] %q: want.decision must be allow or deny", i, c.Name)
		case c.Want.Decision == "deny" && c.Want.Reason == "":
			// A deny for the wrong reason (a missing host, a typo in a claim) would
			// pass unnoticed.
			return nil, fmt.Errorf("cases[%d] %q: a deny needs want.reason", i, c.Name)
		}
		for j, ws := range c.Want.Shadow {
			switch {
			case ws.Rule == "":
				return nil, fmt.Errorf("cases[%d] %q: want.shadow[%d]: rule is required", i, c.Name, j)
			case ws.Decision != "allow" && ws.Decision != "deny" && ws.Decision != "unknown":
				return nil, fmt.Errorf("cases[%d] %q: want.shadow[%d]: decision must be allow, deny or unknown", i, c.Name, j)
			case ws.Decision == "deny" && ws.Reason == "":
				return nil, fmt.Errorf("cases[%d] %q: want.shadow[%d]: a deny needs a reason", i, c.Name, j)
			case ws.Decision != "deny" && ws.Reason != "":
				return nil, fmt.Errorf("cases[%d] %q: want.shadow[%d]: only a deny has a reason", i, c.Name, j)
			}
		}
		if err := c.Request.check(); err != nil {
			return nil, fmt.Errorf("cases[%d] %q: request: %w", i, c.Name, err)
		}
		if c.Token != nil {
			if err := c.Token.check(); err != nil {
				return nil, fmt.Errorf("cases[%d] %q: token: %w", i, c.Name, err)
			}
		}
	}
	return &t, nil
}

// ReadFiles reads the policyFile and fragment files a table names, relative to
// dir (the table file's folder), into its Policy fields.
func (t *Table) ReadFiles(dir string) error {
	read := func(name string) (string, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		b, err := os.ReadFile(name)
		return string(b), err
	}
	var err error
	if t.PolicyFile != "" {
		if t.Policy, err = read(t.PolicyFile); err != nil {
			return fmt.Errorf("policyFile: %w", err)
		}
		t.PolicyFile = ""
	}
	for i := range t.Fragments {
		f := &t.Fragments[i]
		if f.PolicyFile != "" {
			if f.Policy, err = read(f.PolicyFile); err != nil {
				return fmt.Errorf("fragments[%d]: policyFile: %w", i, err)
			}
			f.PolicyFile = ""
		}
	}
	return nil
}

// Result is what became of one case: Problems is empty when it passed.
type Result struct {
	Name     string
	Got      engine.Decision
	Problems []Problem
}

// Problem is one difference between the decision a case got and what it wants.
type Problem struct {
	// Field is what differs ("reason", "header x-user-id", "shadow audit").
	Field     string
	Got, Want string
	// Detail explains Got (a deny's detail), when there is something to say.
	Detail string
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: got %s, want %s", p.Field, p.Got, p.Want)
	if p.Detail != "" {
		s += " (" + p.Detail + ")"
	}
	return s
}

// Run compiles the table's policy (with its fragments) and decides every case
// with the real engine. It fails only when the policy does not compile, a
// fragment is rejected, or a token cannot be built.
func (t *Table) Run(ctx context.Context) ([]Result, error) {
	if t.Policy == "" {
		return nil, errors.New("no policy: give policy or policyFile")
	}
	frags := make([]policy.Fragment, len(t.Fragments))
	for i, f := range t.Fragments {
		if f.Policy == "" {
			return nil, fmt.Errorf("fragments[%d]: policyFile %s was not read (ReadFiles)", i, f.PolicyFile)
		}
		// Listed order is ownership order, as creation time is in a cluster.
		frags[i] = policy.Fragment{ID: f.ID, Created: time.Unix(int64(i), 0), Doc: []byte(f.Policy)}
	}
	p, err := policy.Compose([]byte(t.Policy), frags)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	for _, st := range p.Fragments {
		if !st.Applied {
			return nil, fmt.Errorf("fragment %s rejected: %s", st.ID, st.Error)
		}
	}
	s, err := newSigner(t.Now)
	if err != nil {
		return nil, err
	}
	down := map[string]bool{}
	for _, iss := range t.Unavailable {
		if !slices.ContainsFunc(p.Issuers, func(is policy.Issuer) bool { return is.Issuer == iss }) {
			return nil, fmt.Errorf("unavailable: %q is not an issuer of the policy", iss)
		}
		down[iss] = true
	}
	keys := func(is policy.Issuer) token.KeySource {
		if down[is.Issuer] {
			return keyset.Static{} // no usable key set: jwks_unavailable
		}
		return s.trusted
	}
	snap, err := engine.NewSnapshot(p, keys, token.Config{Now: func() time.Time { return t.Now }})
	if err != nil {
		return nil, err
	}
	// A table calls no Better Auth: credentials that need get-session are answered
	// session_unavailable.
	snap.Online = nil
	for iss, rv := range t.Revocation {
		if !slices.ContainsFunc(p.Issuers, func(is policy.Issuer) bool { return is.Issuer == iss }) {
			return nil, fmt.Errorf("revocation: %q is not an issuer of the policy", iss)
		}
		c, err := rv.checker(t.Now)
		if err != nil {
			return nil, fmt.Errorf("revocation[%q]: %w", iss, err)
		}
		if snap.Revocations == nil {
			snap.Revocations = map[string]engine.RevocationChecker{}
		}
		snap.Revocations[iss] = c
	}
	e := engine.New(engine.Config{})
	e.Swap(snap)
	out := make([]Result, 0, len(t.Cases))
	for i := range t.Cases {
		c := &t.Cases[i]
		req, err := c.Request.engineRequest()
		if err != nil {
			return nil, fmt.Errorf("case %q: %w", c.Name, err)
		}
		switch {
		case c.Token != nil && c.Token.Cookie != nil:
			cookie, err := s.cookies(c.Token, p)
			if err != nil {
				return nil, fmt.Errorf("case %q: cookie: %w", c.Name, err)
			}
			req.Cookies = append(req.Cookies, cookie)
		case c.Token != nil:
			a, err := s.authorization(c.Token, p)
			if err != nil {
				return nil, fmt.Errorf("case %q: token: %w", c.Name, err)
			}
			req.Authorization = []string{a}
		}
		d := e.Decide(ctx, req)
		out = append(out, Result{Name: c.Name, Got: d, Problems: c.Want.check(d)})
	}
	return out, nil
}
