package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const (
	iss   = "https://auth.example.com"
	uuidA = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	uuidB = "71c0e039-6d8d-5394-b9e9-ac347e061fd0"
)

var now = time.Unix(1_800_000_000, 0)

const doc = `
issuers:
  - betterAuthURL: https://auth.example.com
  - betterAuthURL: https://down.example.com
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email, x-user-name: name }
rules:
  - name: health
    paths: ["/healthz"]
    public: true
  - name: own-tasks
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
  - name: admin
    paths: ["/admin/**"]
    when: 'claims.role == "admin"'
default: deny
cors: { allowPreflight: true }
`

type fixture struct {
	e   *engine.Engine
	key *tokentest.Key
}

type downKeys struct{}

func (d downKeys) Lookup(ctx context.Context, kid string) (*keyset.Key, error) {
	return nil, keyset.ErrUnavailable
}

func (d downKeys) Peek(string) *keyset.Key { return nil }

func newFixture(t testing.TB, policyDoc string) *fixture {
	t.Helper()
	e, key := enginetest.New(t, policyDoc, now, nil, nil)
	p := e.Current().Policy
	// The second issuer's JWKS is down: rebuild the verifier with a key source that says so.
	if len(p.Issuers) > 1 {
		keys, _, err := keyset.Parse(tokentest.JWKS(key))
		if err != nil {
			t.Fatal(err)
		}
		issuers := []token.Issuer{}
		for i, is := range p.Issuers {
			var ks token.KeySource = keys
			if i == 1 {
				ks = downKeys{}
			}
			issuers = append(issuers, token.Issuer{Issuer: is.Issuer, Audiences: is.Audiences, Algorithms: is.Algorithms, Keys: ks})
		}
		v, err := token.NewVerifier(token.Config{Issuers: issuers, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		e.Swap(&engine.Snapshot{Policy: p, Verifier: v})
	}
	return &fixture{e: e, key: key}
}

func (f *fixture) token(mod func(map[string]any)) string {
	c := tokentest.Claims(iss, "userA", uuidA, now)
	if mod != nil {
		mod(c)
	}
	return f.key.Sign(c, nil)
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

func TestDecisions(t *testing.T) {
	f := newFixture(t, doc)
	good := f.token(nil)
	cases := []struct {
		name   string
		req    engine.Request
		status int
		reason reason.Code
		rule   string
	}{
		{"own tasks", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(good)}, 200, "", "own-tasks"},
		{"own task, upper-case uuid", engine.Request{Method: "PUT", Path: "/api/" + strings.ToUpper(uuidA) + "/tasks/1?x=y", Authorization: bearer(good)}, 200, "", "own-tasks"},
		{"someone else's tasks", engine.Request{Method: "GET", Path: "/api/" + uuidB + "/tasks", Authorization: bearer(good)}, 403, reason.OwnerMismatch, "own-tasks"},
		{"token without uuid", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { delete(c, "uuid") }))}, 403, reason.ClaimMissing, "own-tasks"},
		{"traversal to someone else", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/../" + uuidB + "/tasks", Authorization: bearer(good)}, 400, reason.PathRejected, engine.RuleNone},
		{"encoded traversal", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/%2e%2e/" + uuidB + "/tasks", Authorization: bearer(good)}, 400, reason.PathRejected, engine.RuleNone},
		{"encoded slash", engine.Request{Method: "GET", Path: "/api/" + uuidA + "%2F..%2F" + uuidB + "/tasks", Authorization: bearer(good)}, 400, reason.PathRejected, engine.RuleNone},
		{"admin", engine.Request{Method: "GET", Path: "/admin/x", Authorization: bearer(f.token(func(c map[string]any) { c["role"] = "admin" }))}, 200, "", "admin"},
		{"not admin", engine.Request{Method: "GET", Path: "/admin/x", Authorization: bearer(good)}, 403, reason.ConditionFalse, "admin"},
		{"public path", engine.Request{Method: "GET", Path: "/healthz"}, 200, "", "health"},
		{"preflight", engine.Request{Method: "OPTIONS", Path: "/api/" + uuidB + "/tasks", Origin: "https://app.example.com", PreflightMethod: "DELETE"}, 200, "", engine.RulePreflight},
		{"OPTIONS that is not a preflight", engine.Request{Method: "OPTIONS", Path: "/api/" + uuidA + "/tasks", Origin: "https://app.example.com"}, 401, reason.TokenMissing, "own-tasks"},
		{"no rule", engine.Request{Method: "GET", Path: "/elsewhere", Authorization: bearer(good)}, 403, reason.NoRule, engine.RuleDefault},
		{"no token", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks"}, 401, reason.TokenMissing, "own-tasks"},
		{"basic auth", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: []string{"Basic eDp5"}}, 401, reason.TokenMalformed, "own-tasks"},
		{"garbage", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer("garbage")}, 401, reason.TokenMalformed, "own-tasks"},
		{"huge", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(strings.Repeat("a", 9000))}, 401, reason.TokenTooLarge, "own-tasks"},
		{"HS256", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(tokentest.Forge(map[string]any{"alg": "HS256", "kid": "k1"}, tokentest.Claims(iss, "a", uuidA, now), []byte("x")))}, 401, reason.AlgNotAllowed, "own-tasks"},
		{"unknown kid", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(tokentest.NewKey(jwa.EdDSA, "k9").Sign(tokentest.Claims(iss, "a", uuidA, now), nil))}, 401, reason.UnknownKID, "own-tasks"},
		{"bad signature", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(tokentest.NewKey(jwa.EdDSA, "k1").Sign(tokentest.Claims(iss, "a", uuidA, now), nil))}, 401, reason.SignatureInvalid, "own-tasks"},
		{"expired", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }))}, 401, reason.TokenExpired, "own-tasks"},
		{"not yet valid", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }))}, 401, reason.TokenNotYetValid, "own-tasks"},
		{"wrong issuer", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { c["iss"] = "https://evil.example.com" }))}, 401, reason.IssuerMismatch, "own-tasks"},
		{"wrong audience", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { c["aud"] = "https://other.example.com" }))}, 401, reason.AudienceMismatch, "own-tasks"},
		{"jwks down", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(f.token(func(c map[string]any) { c["iss"] = "https://down.example.com" }))}, 401, reason.JWKSUnavailable, "own-tasks"},
		{"lower-case method", engine.Request{Method: "delete", Path: "/api/" + uuidB + "/tasks", Authorization: bearer(good)}, 400, reason.MethodRejected, engine.RuleNone},
		{"malformed host", engine.Request{Method: "GET", Host: "api..example.com", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(good)}, 400, reason.HostRejected, engine.RuleNone},
		{"underscore variant through nginx", engine.Request{Method: "GET", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(good), UnderscoreHeaders: []string{"x_user_uuid"}, CannotRemove: true}, 400, reason.HeaderRejected, engine.RuleNone},
	}
	seen := map[reason.Code]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Host == "" {
				tc.req.Host = "api.example.com"
			}
			d := f.e.Decide(context.Background(), &tc.req)
			seen[tc.reason] = true
			if d.Status != tc.status || d.Reason != tc.reason || d.Rule != tc.rule || d.Allow != (tc.status == 200) {
				t.Fatalf("got %d %q rule %q (%s); want %d %q rule %q", d.Status, d.Reason, d.Rule, d.Detail, tc.status, tc.reason, tc.rule)
			}
			if d.Status == 401 && d.TokenPresent != (tc.reason != reason.TokenMissing) {
				t.Fatalf("TokenPresent = %v", d.TokenPresent)
			}
		})
	}
	// Every reason code but not_ready (tested below) and internal_error (a panic,
	// tested at the front doors) has a case above.
	for _, c := range reason.All {
		if !seen[c] && c != reason.NotReady && c != reason.InternalError {
			t.Errorf("no decision case for reason %s", c)
		}
	}
}

func TestNoPolicyDeniesEverything(t *testing.T) {
	e := engine.New(engine.Config{})
	d := e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "x", Path: "/healthz"})
	if d.Allow || d.Reason != reason.NotReady || d.Status != http.StatusForbidden || e.Ready() {
		t.Fatalf("decision without policy = %+v", d)
	}
}

func TestIdentityHeaders(t *testing.T) {
	f := newFixture(t, doc)
	tok := f.token(func(c map[string]any) {
		c["name"] = "Mallory\r\nx-user-uuid: " + uuidB + "\u2028\x00"
		delete(c, "email")
	})
	d := f.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "x", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(tok),
		UnderscoreHeaders: []string{"X_User_Uuid", "x_unrelated"}})
	if !d.Allow {
		t.Fatalf("denied: %+v", d)
	}
	got := map[string]string{}
	for _, h := range d.SetHeaders {
		got[h.Name] = h.Value
	}
	if got["x-user-id"] != "userA" || got["x-user-uuid"] != uuidA {
		t.Fatalf("set = %v", got)
	}
	if n, ok := got["x-user-name"]; ok {
		t.Fatalf("a name that would need cleaning was set as %q; it must be removed", n)
	}
	// email is configured but absent from the token, and the name is unsafe: both
	// are stripped, never passed through; so are the method-override headers and the
	// underscore variant the request carried.
	want := []string{"x-user-email", "x-user-name", "x-http-method-override", "x-http-method", "x-method-override", "X_User_Uuid"}
	if !slices.Equal(d.RemoveHeaders, want) {
		t.Fatalf("remove = %v, want %v", d.RemoveHeaders, want)
	}

	// Public paths and preflights strip every identity header.
	d = f.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "x", Path: "/healthz", Authorization: bearer(tok)})
	if len(d.SetHeaders) != 0 || len(d.RemoveHeaders) != 7 {
		t.Fatalf("public: set %v remove %v", d.SetHeaders, d.RemoveHeaders)
	}
}

func TestHeaderValue(t *testing.T) {
	cases := []struct {
		in   any
		want string
		ok   bool
	}{
		{"a", "a", true},
		{nil, "", false},
		{"", "", false},
		{"  \t ", "", false},
		{true, "true", true},
		{float64(42), "42", true},
		{1.5, "1.5", true},
		{float64(1<<53 - 1), "9007199254740991", true},
		// Past 2^53, 9007199254740993 parses to the same float as ...992: refused.
		{float64(1 << 53), "", false},
		{-float64(1 << 53), "", false},
		{1e300, "", false},
		{[]any{"a", "b"}, `["a","b"]`, true},
		{"é ü 名前", "é ü 名前", true},
		{"Alice Smith", "Alice Smith", true},
		// A value that would need cleaning is refused whole: "Bob\x00" must not become "Bob".
		{"a\x7fb", "", false},
		{"a\u0085b", "", false}, // NEL
		{"Bob\x00", "", false},
		{"Bob\r\nx-user-uuid: 1", "", false},
		{"a\u2028b", "", false},
		{"a\ufffdb", "", false}, // what a lone surrogate decodes to
		{" Bob", "", false},
		{"Bob ", "", false},
		{"Bob\t", "", false},
		{string([]byte{'B', 0xff}), "", false},
		{strings.Repeat("x", engine.MaxHeaderValue+1), "", false},
	}
	for _, tc := range cases {
		got, ok := engine.HeaderValue(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("HeaderValue(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDefaultAuthenticated(t *testing.T) {
	f := newFixture(t, "issuers: [{betterAuthURL: https://auth.example.com}]\ndefault: authenticated\n")
	d := f.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "x", Path: "/anything", Authorization: bearer(f.token(nil))})
	if !d.Allow || d.Rule != engine.RuleDefault || len(d.SetHeaders) != 3 {
		t.Fatalf("with token: %+v", d)
	}
	d = f.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "x", Path: "/anything"})
	if d.Allow || d.Status != 401 {
		t.Fatalf("without token: %+v", d)
	}
	// Preflight is off in this policy: OPTIONS needs a token like anything else.
	d = f.e.Decide(context.Background(), &engine.Request{Method: "OPTIONS", Host: "x", Path: "/x", Origin: "https://a", PreflightMethod: "GET"})
	if d.Allow {
		t.Fatalf("preflight allowed although disabled: %+v", d)
	}
}

// The Check benchmarks run the whole decision for GET /api/{uuid}/tasks (owner rule,
// identity headers, metrics off): with no cache (every check verifies the signature),
// warm (the browser's one token, from the cache) and cold (a token the cache has not
// seen, so verification plus a cache insertion).
func benchCheck(b *testing.B, cache *token.Cache, tokens int) {
	e, key := enginetest.New(b, doc, now, nil, cache)
	reqs := make([]*engine.Request, tokens)
	for i := range reqs {
		c := tokentest.Claims(iss, fmt.Sprintf("user-%d", i), uuidA, now)
		reqs[i] = &engine.Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(key.Sign(c, nil))}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if d := e.Check(context.Background(), "bench", reqs[i%len(reqs)]); !d.Allow {
			b.Fatal(d.Detail)
		}
		i++
	}
}

func BenchmarkCheckNoCache(b *testing.B) { benchCheck(b, nil, 1) }
func BenchmarkCheckWarm(b *testing.B)    { benchCheck(b, token.NewCache(token.CacheConfig{}), 1) }

// Cold cycles 8192 tokens through a 128-entry cache: nearly every check misses.
func BenchmarkCheckCold(b *testing.B) {
	benchCheck(b, token.NewCache(token.CacheConfig{MaxEntries: 128}), 8192)
}

func BenchmarkCheckDenyNoToken(b *testing.B) {
	f := newFixture(b, doc)
	req := &engine.Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuidA + "/tasks"}
	b.ReportAllocs()
	for b.Loop() {
		if d := f.e.Decide(context.Background(), req); d.Allow {
			b.Fatal("allowed")
		}
	}
}
