package engine_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/decisions"
	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
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

// TestDecisionTables runs every testdata/decisions/*.yaml: a policy, requests and
// the decisions they must get (see package decisions for the format). Together the
// tables must reach every reason code but not_ready (no policy at all, tested
// below) and internal_error (a panic, tested at the front doors).
func TestDecisionTables(t *testing.T) {
	files, err := filepath.Glob("testdata/decisions/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no decision tables: %v", err)
	}
	seen := map[reason.Code]bool{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			table, err := decisions.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			results, err := table.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				seen[r.Got.Reason] = true
				for _, p := range r.Problems {
					t.Errorf("%s: %s", r.Name, p)
				}
				if r.Got.Status == 401 && r.Got.TokenPresent != (r.Got.Reason != reason.TokenMissing) {
					t.Errorf("%s: TokenPresent = %v", r.Name, r.Got.TokenPresent)
				}
			}
		})
	}
	for _, c := range reason.All {
		if !seen[c] && c != reason.NotReady && c != reason.InternalError {
			t.Errorf("no decision case for reason %s", c)
		}
	}
}

// TestTokenTooLarge is the one reason a table cannot spell conveniently.
func TestTokenTooLarge(t *testing.T) {
	f := newFixture(t, doc)
	d := f.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuidA + "/tasks",
		Authorization: bearer(strings.Repeat("a", token.MaxSize+1))})
	if d.Allow || d.Status != 401 || d.Reason != reason.TokenTooLarge {
		t.Fatalf("huge token: %+v", d)
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
	if len(d.SetHeaders) != 0 || len(d.RemoveHeaders) != 8 || !slices.Contains(d.RemoveHeaders, "x-auth-method") {
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
	if !d.Allow || d.Rule != engine.RuleDefault || len(d.SetHeaders) != 4 || d.SetHeaders[3] != (engine.Header{Name: "x-auth-method", Value: "jwt"}) {
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
	benchCheckWith(b, cache, tokens, nil)
}

// benchCheckWith runs the Check benchmark with revocations (nil: none) for iss.
func benchCheckWith(b *testing.B, cache *token.Cache, tokens int, revoked engine.RevocationChecker) {
	e, key := enginetest.New(b, doc, now, nil, cache)
	if revoked != nil {
		s := *e.Current()
		s.Revocations = map[string]engine.RevocationChecker{iss: revoked}
		e.Swap(&s)
	}
	reqs := make([]*engine.Request, tokens)
	for i := range reqs {
		c := tokentest.Claims(iss, fmt.Sprintf("user-%d", i), uuidA, now)
		c["sid"] = fmt.Sprintf("session-%d", i)
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

// WarmRevocation is Warm with a revocation state of 10k revoked sessions, 1k users
// and 100 bans, none of them this token's: the cost revocation adds to every check.
func BenchmarkCheckWarmRevocation(b *testing.B) {
	var entries []revocation.Entry
	ms := now.UnixMilli()
	for i := range 10_000 {
		entries = append(entries, revocation.Entry{Kind: revocation.KindSession, SessionID: fmt.Sprint("gone-", i), At: ms})
	}
	for i := range 1_000 {
		entries = append(entries, revocation.Entry{Kind: revocation.KindUser, UserID: fmt.Sprint("u-", i), At: ms})
	}
	for i := range 100 {
		entries = append(entries, revocation.Entry{Kind: revocation.KindBan, UserID: fmt.Sprint("b-", i), At: ms})
	}
	benchCheckWith(b, token.NewCache(token.CacheConfig{}), 1, stateAt{revocation.NewState(entries), now})
}

// stateAt checks a revocation state as a fresh feed would.
type stateAt struct {
	s   *revocation.State
	now time.Time
}

func (c stateAt) Check(sid, user string, iat, _ time.Time) (reason.Code, string) {
	return c.s.Check(sid, user, iat, c.now)
}

// Cold cycles 8192 tokens through a 128-entry cache: nearly every check misses.
func BenchmarkCheckCold(b *testing.B) {
	benchCheck(b, token.NewCache(token.CacheConfig{MaxEntries: 128}), 8192)
}

// Ed25519Floor is the signature check alone (crypto/ed25519 on the token's
// signing input), what NoCache and Cold cannot go below.
func BenchmarkEd25519Floor(b *testing.B) {
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	var pub ed25519.PublicKey
	if err := key.JWK().Raw(&pub); err != nil {
		b.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	msg := []byte(tok[:i])
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("does not verify")
		}
	}
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

// The session benchmarks compare a browser's signed session cookie (verified
// offline, from the token cache after the first check) with a Bearer JWT, both
// warm, and the online check of a session cookie without the cache (a get-session
// answer from the cache).
func BenchmarkCheckWarmSessionCookie(b *testing.B) {
	doc := `
issuers:
  - betterAuthURL: https://auth.example.com
    credentials: [jwt, sessionCookie]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`
	e, key := enginetest.New(b, doc, now, nil, token.NewCache(token.CacheConfig{}))
	user := map[string]any{"id": "u-1", "uuid": uuidA, "email": "a@example.test"}
	session := map[string]any{"id": "s-1", "token": "st", "userId": "u-1", "expiresAt": now.Add(time.Hour).UTC().Format(time.RFC3339Nano)}
	data := key.Sign(map[string]any{"session": session, "user": user, "sid": "st", "sub": "u-1", "iss": iss, "aud": token.CookieCacheAudience,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}, map[string]any{"typ": token.CookieCacheType})
	req := &engine.Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuidA + "/tasks",
		Cookies: []string{"__Secure-better-auth.session_token=st.c2lnbmF0dXJl; __Secure-better-auth.session_data=" + data}}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Check(context.Background(), "bench", req); !d.Allow {
			b.Fatal(d.Detail)
		}
	}
}
