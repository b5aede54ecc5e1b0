package token_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// keyring is a KeySource whose keys can change, and which counts full lookups.
type keyring struct {
	keys    atomic.Pointer[keyset.Static]
	lookups atomic.Int64
}

func newKeyring(t *testing.T, keys ...*tokentest.Key) *keyring {
	k := &keyring{}
	k.set(t, keys...)
	return k
}

func (k *keyring) set(t *testing.T, keys ...*tokentest.Key) {
	s := static(t, keys...)
	k.keys.Store(&s)
}

func (k *keyring) Lookup(ctx context.Context, kid string) (*keyset.Key, error) {
	k.lookups.Add(1)
	return k.keys.Load().Lookup(ctx, kid)
}

func (k *keyring) Peek(kid string) *keyset.Key { return k.keys.Load().Peek(kid) }

func cachedVerifier(t *testing.T, c *token.Cache, clk *tokentest.Clock, ks token.KeySource, audiences ...string) *token.Verifier {
	t.Helper()
	if len(audiences) == 0 {
		audiences = []string{iss}
	}
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: audiences, Keys: ks}}, Now: clk.Now, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// cacheFixture: one key "k1" in a changeable keyring, a settable clock at now, an
// unbounded cache, and a verifier using them.
func cacheFixture(t *testing.T) (*tokentest.Key, *keyring, *tokentest.Clock, *token.Cache, *token.Verifier) {
	t.Helper()
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	ring := newKeyring(t, k1)
	clk := tokentest.NewClock(now)
	c := token.NewCache(token.CacheConfig{})
	return k1, ring, clk, c, cachedVerifier(t, c, clk, ring)
}

func TestCacheHitSkipsVerification(t *testing.T) {
	k1, ring, _, c, v := cacheFixture(t)
	tok := k1.Sign(tokentest.Claims(iss, "u", "x", now), nil)
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		again, err := v.Verify(context.Background(), tok)
		if err != nil || again != first {
			t.Fatalf("cached verify: %v, same claims %v", err, again == first)
		}
	}
	if n := ring.lookups.Load(); n != 1 {
		t.Fatalf("key lookups = %d, want 1 (the rest from the cache)", n)
	}
	if st := c.Stats(); st.Hits != 10 || st.Misses != 1 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheNeverOutlivesTheToken(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	clk := tokentest.NewClock(now)
	v := cachedVerifier(t, token.NewCache(token.CacheConfig{}), clk, newKeyring(t, k1))
	tok := k1.Sign(tokentest.Claims(iss, "u", "x", now), nil) // exp = now + 15m
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	clk.Add(15*time.Minute + token.DefaultLeeway - time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within exp+leeway: %v", err)
	}
	clk.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), tok); codeOf(err) != reason.TokenExpired {
		t.Fatalf("past exp+leeway: %v, want token_expired", err)
	}

	// nbf: not valid (so not cached) before, valid after.
	clk.Set(now)
	early := k1.Sign(tokentest.Claims(iss, "u", "x", now), nil)
	claims := tokentest.Claims(iss, "u", "x", now)
	claims["nbf"] = now.Add(time.Minute).Unix()
	future := k1.Sign(claims, nil)
	_ = early
	for range 2 {
		if _, err := v.Verify(context.Background(), future); codeOf(err) != reason.TokenNotYetValid {
			t.Fatalf("before nbf: %v", err)
		}
	}
	clk.Add(time.Minute)
	if _, err := v.Verify(context.Background(), future); err != nil {
		t.Fatalf("after nbf: %v", err)
	}
}

func TestCacheDropsWhenKeyOrIssuerGoes(t *testing.T) {
	k1, k2 := tokentest.NewKey(jwa.EdDSA, "k1"), tokentest.NewKey(jwa.EdDSA, "k2")
	ring := newKeyring(t, k1, k2)
	clk := tokentest.NewClock(now)
	c := token.NewCache(token.CacheConfig{})
	v := cachedVerifier(t, c, clk, ring)
	tok := k1.Sign(tokentest.Claims(iss, "u", "x", now), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	// k1 leaves the JWKS (rotation past its grace period).
	ring.set(t, k2)
	if _, err := v.Verify(context.Background(), tok); codeOf(err) != reason.UnknownKID {
		t.Fatalf("kid gone: %v, want unknown_kid", err)
	}
	// k1's kid now names another key: the cached success must not carry over.
	ring.set(t, tokentest.NewKey(jwa.EdDSA, "k1"), k2)
	if _, err := v.Verify(context.Background(), tok); codeOf(err) != reason.SignatureInvalid {
		t.Fatalf("kid reused for another key: %v, want signature_invalid", err)
	}

	// A new policy (a new Verifier on the same cache) that changes the audience or
	// drops the issuer does not inherit the old verification.
	ring.set(t, k1, k2)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := cachedVerifier(t, c, clk, ring, "https://other.example.com").Verify(context.Background(), tok); codeOf(err) != reason.AudienceMismatch {
		t.Fatalf("audience changed: %v", err)
	}
	other, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: "https://else.example.com", Audiences: []string{"x"}, Keys: ring}}, Now: clk.Now, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(context.Background(), tok); codeOf(err) != reason.IssuerMismatch {
		t.Fatalf("issuer left the policy: %v", err)
	}
	// The same configuration again (a reload that did not touch this issuer) hits.
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	before := c.Stats().Hits
	if _, err := cachedVerifier(t, c, clk, ring).Verify(context.Background(), tok); err != nil || c.Stats().Hits != before+1 {
		t.Fatalf("unchanged issuer after reload: %v, hits %d -> %d", err, before, c.Stats().Hits)
	}
}

func TestCacheNeverStoresFailures(t *testing.T) {
	_, ring, _, c, v := cacheFixture(t)
	forged := tokentest.NewKey(jwa.EdDSA, "k1").Sign(tokentest.Claims(iss, "u", "x", now), nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), forged); codeOf(err) != reason.SignatureInvalid {
			t.Fatalf("forged: %v", err)
		}
	}
	if st := c.Stats(); st.Entries != 0 || ring.lookups.Load() != 3 {
		t.Fatalf("stats %+v, lookups %d", st, ring.lookups.Load())
	}
}

func TestCacheIsBounded(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	clk := tokentest.NewClock(now)
	c := token.NewCache(token.CacheConfig{MaxEntries: 128})
	v := cachedVerifier(t, c, clk, newKeyring(t, k1))
	for i := range 1000 {
		if _, err := v.Verify(context.Background(), k1.Sign(tokentest.Claims(iss, fmt.Sprint(i), "x", now), nil)); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if st.Entries > 128 || st.Evictions < 1000-128 {
		t.Fatalf("stats %+v", st)
	}
	byBytes := token.NewCache(token.CacheConfig{MaxBytes: 64 * 4096})
	v = cachedVerifier(t, byBytes, clk, newKeyring(t, k1))
	for i := range 1000 {
		if _, err := v.Verify(context.Background(), k1.Sign(tokentest.Claims(iss, fmt.Sprint(i), "x", now), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if st := byBytes.Stats(); st.Bytes > 64*4096 || st.Entries >= 1000 {
		t.Fatalf("byte-bounded stats %+v", st)
	}
}

func TestCacheConcurrent(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	clk := tokentest.NewClock(now)
	c := token.NewCache(token.CacheConfig{MaxEntries: 256})
	v := cachedVerifier(t, c, clk, newKeyring(t, k1))
	toks := make([]string, 64)
	for i := range toks {
		toks[i] = k1.Sign(tokentest.Claims(iss, fmt.Sprint(i), "x", now), nil)
	}
	bad := tokentest.NewKey(jwa.EdDSA, "k1").Sign(tokentest.Claims(iss, "evil", "x", now), nil)
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				tok := toks[(g*7+i)%len(toks)]
				if i%50 == 0 {
					if _, err := v.Verify(context.Background(), bad); err == nil {
						wrong.Add(1)
					}
					continue
				}
				c, err := v.Verify(context.Background(), tok)
				if err != nil || c.Subject != fmt.Sprint((g*7+i)%len(toks)) {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d wrong results under concurrency", wrong.Load())
	}
}

func TestWithClaimsKeepsOnlyThose(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	ring := newKeyring(t, k1)
	clk := tokentest.NewClock(now)
	c := token.NewCache(token.CacheConfig{})
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{iss}, Keys: ring}}, Now: clk.Now, Cache: c, KeepClaims: []string{"uuid", "sub", "uuid"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := k1.Sign(tokentest.Claims(iss, "u1", "x-uuid", now), nil)
	for range 2 { // the full verification and the cache hit give the same
		cl, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if cl.Values.Len() != 2 || get(cl, "uuid") != "x-uuid" || get(cl, "sub") != "u1" || get(cl, "email") != nil || cl.Subject != "u1" {
			t.Fatalf("claims %+v", cl.Values.Map())
		}
	}
	// A verifier keeping all claims must not reuse the trimmed entry.
	all := cachedVerifier(t, c, clk, ring)
	cl, err := all.Verify(context.Background(), tok)
	if err != nil || get(cl, "email") != "u1@example.test" {
		t.Fatalf("all claims after a trimmed entry: %v %+v", err, cl)
	}
}

// TestExpiredEntriesGoBeforeTheCacheIsFull: new tokens push expired ones out even
// while the cache has room, so that expired entries (and what the engine keeps
// with them) do not stay until it fills.
func TestExpiredEntriesGoBeforeTheCacheIsFull(t *testing.T) {
	k1, _, clk, c, v := cacheFixture(t)
	verify := func(i int) {
		t.Helper()
		tok := k1.Sign(tokentest.Claims(iss, fmt.Sprint("u", i), "x", clk.Now()), nil)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 640 {
		verify(i)
	}
	if n := c.Stats().Entries; n != 640 {
		t.Fatalf("%d entries, want 640", n)
	}
	clk.Add(time.Hour) // every one of them has expired
	for i := range 640 {
		verify(1000 + i)
	}
	st := c.Stats()
	if st.Entries > 640+64 || st.Evictions < 640-64 {
		t.Fatalf("after 640 new tokens: %d entries, %d evictions; the expired ones stayed", st.Entries, st.Evictions)
	}
}
