package policy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

const fragBase = `issuers: [{betterAuthURL: https://auth.example.com}]
rules: [{name: health, paths: ["/healthz"], public: true}, {name: b/p/taken, paths: ["/t"]}]
fragments:
  shop: [shop.example.com, "*.shop.example.com"]
  b: [b.example.com, c.example.com]
  t: [x.example.com, a.example.com]
`

func frag(id string, at int, doc string) policy.Fragment {
	return policy.Fragment{ID: id, Created: time.Unix(int64(at), 0), Doc: []byte(doc)}
}

// TestComposeRejectsEachBadFragmentAlone: every way a fragment can be wrong is
// rejected with its own reason, and the good fragments next to it stay applied.
func TestComposeRejectsEachBadFragmentAlone(t *testing.T) {
	good := frag("shop/policy", 1, "hosts: [a.shop.example.com]\nrules: [{name: orders, paths: [\"/orders/**\"]}]\n")
	iss := func(extra string) policy.Fragment {
		return frag("b/p", 2, "hosts: [b.example.com]\nissuers: [{betterAuthURL: https://auth.b.example.com"+extra+"}]\nrules: [{name: r, paths: [/x]}]\n")
	}
	many := "hosts: [b.example.com]\nrules:\n"
	for i := range policy.MaxFragmentRules + 1 {
		many += fmt.Sprintf("  - {name: r%d, paths: [/x%d]}\n", i, i)
	}
	for name, tc := range map[string]struct {
		f    policy.Fragment
		want string
	}{
		"same host, same namespace":  {frag("shop/other", 2, "hosts: [A.SHOP.example.com]\nrules: [{name: r, paths: [/x]}]\n"), "already owned by fragment shop/policy"},
		"wildcard over the host":     {frag("shop/other", 2, "hosts: ['*.shop.example.com']\nrules: [{name: r, paths: [/x]}]\n"), "already owned"},
		"another namespace's host":   {frag("b/p", 2, "hosts: [a.shop.example.com]\nrules: [{name: r, paths: [/x]}]\n"), "not delegated to namespace \"b\""},
		"a wildcard over everything": {frag("b/p", 2, "hosts: ['*.com']\nrules: [{name: r, paths: [/x]}]\n"), "not delegated"},
		"a namespace without hosts":  {frag("z/p", 2, "hosts: [z.example.com]\nrules: [{name: r, paths: [/x]}]\n"), "delegates no host to namespace \"z\""},
		"typo":                       {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, pahts: [/x]}]\n"), "pahts"},
		"no hosts":                   {frag("b/p", 2, "rules: [{name: r, paths: [/x]}]\n"), "claims at least one host"},
		"no rules":                   {frag("b/p", 2, "hosts: [b.example.com]\n"), "at least one rule"},
		"too many rules":             {frag("b/p", 2, many), "more than the"},
		"rule host not claimed":      {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, hosts: [c.example.com], paths: [/x]}]\n"), "not a host the fragment claims"},
		"rule host is the other's":   {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, hosts: [a.shop.example.com], paths: [/x]}]\n"), "not a host the fragment claims"},
		"a base rule's name":         {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: taken, paths: [/x]}]\n"), "name of a rule of the base policy"},
		"bad rule":                   {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, paths: [/x], when: 'claims.'}]\n"), "when"},
		"base issuer again":          {frag("b/p", 2, "hosts: [b.example.com]\nissuers: [{betterAuthURL: https://auth.example.com}]\nrules: [{name: r, paths: [/x]}]\n"), "already listed by the base policy"},
		"revocation":                 {iss(", revocation: {secretFile: /s}"), "revocation"},
		"api keys":                   {iss(", credentials: [apiKey]"), "jwt only"},
		"fast refresh":               {iss(", refreshInterval: 1ms"), "refreshInterval: at least 1m"},
		"fast refetch":               {iss(", refetchCooldown: 1ns"), "refetchCooldown: at least 10s"},
		"insecure JWKS":              {iss(", allowInsecureJWKS: true, jwksURL: http://auth.b.example.com/jwks"), "https"},
		"loopback JWKS":              {iss(", jwksURL: https://127.0.0.1:9003/metrics"), "not a public address"},
		"metadata JWKS":              {iss(", jwksURL: https://169.254.169.254/latest"), "not a public address"},
		"private JWKS":               {iss(", jwksURL: 'https://[fd00::1]/jwks'"), "not a public address"},
		"localhost JWKS":             {iss(", jwksURL: https://localhost/jwks"), "this machine"},
		"identity":                   {frag("b/p", 2, "hosts: [b.example.com]\nidentity: {headers: {x-a: sub}}\nrules: [{name: r, paths: [/x]}]\n"), "identity"},
		"unreadable":                 {policy.Fragment{ID: "b/p", Created: time.Unix(2, 0), Err: errors.New("ConfigMap has no key")}, "no key"},
		"two documents":              {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, paths: [/x]}]\n---\nhosts: [shop.example.com]\n"), "more than one document"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := policy.Compose([]byte(fragBase), []policy.Fragment{tc.f, good})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Fragments) != 2 {
				t.Fatalf("statuses %+v", p.Fragments)
			}
			shop, bad := p.Fragments[0], p.Fragments[1]
			if shop.ID != "shop/policy" || !shop.Applied || bad.Applied || bad.InForce != "" || !strings.Contains(bad.Error, tc.want) {
				t.Fatalf("statuses %+v, want %s rejected mentioning %q", p.Fragments, tc.f.ID, tc.want)
			}
			if len(p.Rules) != 3 || p.Rules[2].Name != "shop/policy/orders" {
				t.Fatalf("rules %v", ruleNames(p))
			}
		})
	}
}

// TestComposeDelegation: the base's fragments: section is validated, and a host
// is delegated to one namespace only.
func TestComposeDelegation(t *testing.T) {
	for doc, want := range map[string]string{
		"fragments: {a: [x.example.com], b: ['*.example.com']}\n": "a host belongs to one namespace",
		"fragments: {a: [x.example.com], b: [X.EXAMPLE.COM.]}\n":  "ends with a dot",
		"fragments: {a: [x.example.com:443]}\n":                   "port",
		"fragments: {a: []}\n":                                    "list the hosts",
		"fragments: {'a/b': [x.example.com]}\n":                   "not a namespace",
	} {
		if _, err := policy.Load([]byte("issuers: [{betterAuthURL: https://auth.example.com}]\n" + doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error mentioning %q", doc, err, want)
		}
	}
}

// TestComposeKeepsTheLastGoodVersion: a fragment whose new version is rejected
// keeps its last good one in force, hosts and all.
func TestComposeKeepsTheLastGoodVersion(t *testing.T) {
	good := []byte("hosts: [b.example.com]\nrules: [{name: r, paths: [/good]}]\n")
	f := frag("b/p", 1, "hosts: [b.example.com]\nrules: [{name: r, pahts: [/bad]}]\n")
	f.Fallback = good
	waiting := frag("b/q", 2, "hosts: [b.example.com]\nrules: [{name: r, paths: [/q]}]\n")
	p, err := policy.Compose([]byte(fragBase), []policy.Fragment{f, waiting})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Fragments[0]
	if st.Applied || st.InForce != policy.Hash(good) || !strings.Contains(st.Error, "pahts") || st.Rules != 1 {
		t.Fatalf("status %+v", st)
	}
	if got := ruleNames(p); len(got) != 3 || got[2] != "b/p/r" {
		t.Fatalf("rules %v: the last good version is not in force", got)
	}
	if q := p.Fragments[1]; q.Applied || !strings.Contains(q.Error, "already owned by fragment b/p") {
		t.Fatalf("the host went to the next claimant on a bad edit: %+v", q)
	}
}

func ruleNames(p *policy.Policy) []string {
	var out []string
	for _, r := range p.Rules {
		out = append(out, r.Name)
	}
	return out
}

// TestComposeOwnership: the fragment created first owns a contested host, whatever
// order the watch delivered them in; removing it hands the host to the other.
func TestComposeOwnership(t *testing.T) {
	a := frag("t/a", 5, "hosts: [x.example.com]\nrules: [{name: r, paths: [/a]}]\n")
	b := frag("t/b", 3, "hosts: [x.example.com]\nrules: [{name: r, paths: [/b]}]\n")
	for _, order := range [][]policy.Fragment{{a, b}, {b, a}} {
		p, err := policy.Compose([]byte(fragBase), order)
		if err != nil {
			t.Fatal(err)
		}
		if got := ruleNames(p); len(got) != 3 || got[2] != "t/b/r" {
			t.Fatalf("rules %v, want t/b (created first) to own x.example.com", got)
		}
	}
	p, err := policy.Compose([]byte(fragBase), []policy.Fragment{a})
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(p); len(got) != 3 || got[2] != "t/a/r" {
		t.Fatalf("rules %v after t/b went", got)
	}
}

// TestComposeHash: the hash is the base's alone without fragments, and changes
// with each fragment applied.
func TestComposeHash(t *testing.T) {
	none, err := policy.Compose([]byte(fragBase), nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := policy.Load([]byte(fragBase))
	if err != nil {
		t.Fatal(err)
	}
	if none.Hash != loaded.Hash {
		t.Fatalf("hash %s, want Load's %s", none.Hash, loaded.Hash)
	}
	one, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("t/p", 1, "hosts: [a.example.com]\nrules: [{name: r, paths: [/a]}]\n")})
	two, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("t/p", 1, "hosts: [a.example.com]\nrules: [{name: r, paths: [/b]}]\n")})
	rejected, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("t/p", 1, "hosts: [a.example.com]\n")})
	if one.Hash == none.Hash || two.Hash == one.Hash || rejected.Hash != none.Hash {
		t.Fatalf("hashes none %s one %s two %s rejected %s", none.Hash, one.Hash, two.Hash, rejected.Hash)
	}
}

// TestComposeBadBase: a base that does not compile is the only error.
func TestComposeBadBase(t *testing.T) {
	if _, err := policy.Compose([]byte("issuers: []\n"), nil); err == nil {
		t.Fatal("a base without issuers was accepted")
	}
}

// TestComposeScopesFragmentIssuers: a fragment's issuer accepts its hosts only.
func TestComposeScopesFragmentIssuers(t *testing.T) {
	p, err := policy.Compose([]byte(fragBase), []policy.Fragment{frag("shop/p", 1,
		"hosts: [shop.example.com, '*.shop.example.com']\nissuers: [{betterAuthURL: https://auth.shop.example.com}]\nrules: [{name: r, paths: [/a]}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	if !p.ScopedIssuers || len(p.Issuers) != 2 {
		t.Fatalf("issuers %+v", p.Issuers)
	}
	base, shop := p.Issuers[0], p.Issuers[1]
	for host, want := range map[string]bool{"shop.example.com": true, "a.shop.example.com": true, "example.com": false, "evilshop.example.com": false} {
		if shop.AcceptsHost(host) != want || !base.AcceptsHost(host) {
			t.Errorf("%s: shop issuer accepts = %v, want %v", host, shop.AcceptsHost(host), want)
		}
	}
	if shop.Fragment != "shop/p" || base.Fragment != "" {
		t.Fatalf("fragments %q %q", base.Fragment, shop.Fragment)
	}
}
