package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

const fragBase = `issuers: [{betterAuthURL: https://auth.example.com}]
rules: [{name: health, paths: ["/healthz"], public: true}]
`

func frag(id string, at int, doc string) policy.Fragment {
	return policy.Fragment{ID: id, Created: time.Unix(int64(at), 0), Doc: []byte(doc)}
}

// TestComposeRejectsEachBadFragmentAlone: every way a fragment can be wrong is
// rejected with its own reason, and the good fragments next to it stay applied.
func TestComposeRejectsEachBadFragmentAlone(t *testing.T) {
	good := frag("shop/policy", 1, "hosts: [shop.example.com]\nrules: [{name: orders, paths: [\"/orders/**\"]}]\n")
	for name, tc := range map[string]struct {
		f    policy.Fragment
		want string
	}{
		"same host":                {frag("b/p", 2, "hosts: [SHOP.example.com]\nrules: [{name: r, paths: [/x]}]\n"), "already owned by fragment shop/policy"},
		"wildcard over the host":   {frag("b/p", 2, "hosts: ['*.example.com']\nrules: [{name: r, paths: [/x]}]\n"), "already owned"},
		"typo":                     {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, pahts: [/x]}]\n"), "pahts"},
		"no hosts":                 {frag("b/p", 2, "rules: [{name: r, paths: [/x]}]\n"), "claims at least one host"},
		"no rules":                 {frag("b/p", 2, "hosts: [b.example.com]\n"), "at least one rule"},
		"rule host not claimed":    {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, hosts: [c.example.com], paths: [/x]}]\n"), "not a host the fragment claims"},
		"rule host is the other's": {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, hosts: [shop.example.com], paths: [/x]}]\n"), "not a host the fragment claims"},
		"bad rule":                 {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, paths: [/x], when: 'claims.'}]\n"), "when"},
		"base issuer again":        {frag("b/p", 2, "hosts: [b.example.com]\nissuers: [{betterAuthURL: https://auth.example.com}]\nrules: [{name: r, paths: [/x]}]\n"), "already listed by the base policy"},
		"revocation":               {frag("b/p", 2, "hosts: [b.example.com]\nissuers: [{betterAuthURL: https://b.example.com, revocation: {secretFile: /s}}]\nrules: [{name: r, paths: [/x]}]\n"), "revocation"},
		"api keys":                 {frag("b/p", 2, "hosts: [b.example.com]\nissuers: [{betterAuthURL: https://b.example.com, credentials: [apiKey]}]\nrules: [{name: r, paths: [/x]}]\n"), "jwt only"},
		"identity":                 {frag("b/p", 2, "hosts: [b.example.com]\nidentity: {headers: {x-a: sub}}\nrules: [{name: r, paths: [/x]}]\n"), "identity"},
		"unreadable":               {policy.Fragment{ID: "b/p", Created: time.Unix(2, 0), Err: errors.New("ConfigMap has no key")}, "no key"},
		"two documents":            {frag("b/p", 2, "hosts: [b.example.com]\nrules: [{name: r, paths: [/x]}]\n---\nhosts: [shop.example.com]\n"), "more than one document"},
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
			if shop.ID != "shop/policy" || !shop.Applied || bad.Applied || !strings.Contains(bad.Error, tc.want) {
				t.Fatalf("statuses %+v, want b/p rejected mentioning %q", p.Fragments, tc.want)
			}
			if len(p.Rules) != 2 || p.Rules[1].Name != "shop/policy/orders" {
				t.Fatalf("rules %v", ruleNames(p))
			}
		})
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
	a := frag("a/p", 5, "hosts: [x.example.com]\nrules: [{name: r, paths: [/a]}]\n")
	b := frag("b/p", 3, "hosts: [x.example.com]\nrules: [{name: r, paths: [/b]}]\n")
	for _, order := range [][]policy.Fragment{{a, b}, {b, a}} {
		p, err := policy.Compose([]byte(fragBase), order)
		if err != nil {
			t.Fatal(err)
		}
		if got := ruleNames(p); len(got) != 2 || got[1] != "b/p/r" {
			t.Fatalf("rules %v, want b/p (created first) to own x.example.com", got)
		}
	}
	p, err := policy.Compose([]byte(fragBase), []policy.Fragment{a})
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(p); len(got) != 2 || got[1] != "a/p/r" {
		t.Fatalf("rules %v after b/p went", got)
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
	one, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("a/p", 1, "hosts: [a.example.com]\nrules: [{name: r, paths: [/a]}]\n")})
	two, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("a/p", 1, "hosts: [a.example.com]\nrules: [{name: r, paths: [/b]}]\n")})
	rejected, _ := policy.Compose([]byte(fragBase), []policy.Fragment{frag("a/p", 1, "hosts: [a.example.com]\n")})
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
