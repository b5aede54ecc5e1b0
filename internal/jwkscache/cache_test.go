package jwkscache_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// jwksServer serves whatever body is current and counts requests.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int64
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func start(t *testing.T, cfg jwkscache.Config) *jwkscache.Cache {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := jwkscache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	t.Cleanup(c.Stop)
	select {
	case <-c.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("first fetch did not finish")
	}
	return c
}

func TestRefreshPicksUpNewKeys(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	k2 := tokentest.NewKey(jwa.EdDSA, "k2")
	srv := newJWKSServer(t, tokentest.JWKS(k1))
	c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 50 * time.Millisecond})
	if _, err := c.Lookup(context.Background(), "k1"); err != nil {
		t.Fatal(err)
	}
	srv.set(http.StatusOK, tokentest.JWKS(k1, k2))
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Keys()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("background refresh never saw k2")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotationUnknownKidRefetchesOnce(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	k2 := tokentest.NewKey(jwa.EdDSA, "k2")
	srv := newJWKSServer(t, tokentest.JWKS(k1))
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	c := start(t, jwkscache.Config{URL: srv.URL, Name: "iss", RefreshInterval: time.Hour, Cooldown: time.Hour, Metrics: m})
	// Better Auth rotates: the JWKS now lists [old, new] and a token names the new kid.
	srv.set(http.StatusOK, tokentest.JWKS(k1, k2))
	before := srv.hits.Load()
	if _, err := c.Lookup(context.Background(), "k2"); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Fatalf("fetches for the new kid = %d, want 1", got)
	}
	if _, err := c.Lookup(context.Background(), "k1"); err != nil {
		t.Fatalf("old kid within grace: %v", err)
	}
	if v := testutil.ToFloat64(m.JWKSKeysGauge("iss")); v != 2 {
		t.Fatalf("jwks_keys = %v, want 2", v)
	}
}

func TestKidFloodCoalescesAndCoolsDown(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	srv := newJWKSServer(t, tokentest.JWKS(k1))
	m := metrics.New(prometheus.NewRegistry())
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	c := start(t, jwkscache.Config{URL: srv.URL, Name: "iss", RefreshInterval: time.Hour, Cooldown: 30 * time.Second, Metrics: m, Now: clk.Now})
	base := srv.hits.Load()

	// 200 concurrent requests with random kids: one refetch, shared.
	var wg sync.WaitGroup
	var unknown atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Lookup(context.Background(), fmt.Sprintf("random-%d", i)); errors.Is(err, jwkscache.ErrUnknownKID) {
				unknown.Add(1)
			}
		}()
	}
	wg.Wait()
	if unknown.Load() != 200 {
		t.Fatalf("unknown kids denied = %d, want 200", unknown.Load())
	}
	if got := srv.hits.Load() - base; got != 1 {
		t.Fatalf("fetches during the flood = %d, want 1", got)
	}
	// Within the cooldown: no fetch at all, counted as suppressed.
	for i := range 1000 {
		_, _ = c.Lookup(context.Background(), fmt.Sprintf("again-%d", i))
	}
	if got := srv.hits.Load() - base; got != 1 {
		t.Fatalf("fetches within cooldown = %d, want 1", got)
	}
	if s := testutil.ToFloat64(m.RefetchSuppressedCounter("iss")); s < 1000 {
		t.Fatalf("suppressed = %v, want >= 1000", s)
	}
	// After the cooldown one more fetch is allowed.
	clk.Add(31 * time.Second)
	_, _ = c.Lookup(context.Background(), "after-cooldown")
	if got := srv.hits.Load() - base; got != 2 {
		t.Fatalf("fetches after cooldown = %d, want 2", got)
	}
}

func TestOutageKeepsKeysUntilMaxStale(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	srv := newJWKSServer(t, tokentest.JWKS(k1))
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 20 * time.Millisecond, MaxStale: time.Hour, Now: clk.Now})
	srv.set(http.StatusServiceUnavailable, []byte("down"))
	hits := srv.hits.Load()
	for srv.hits.Load() < hits+3 { // several failed refreshes
		time.Sleep(10 * time.Millisecond)
	}
	clk.Add(59 * time.Minute)
	if _, err := c.Lookup(context.Background(), "k1"); err != nil {
		t.Fatalf("stale but within maxStale: %v", err)
	}
	clk.Add(2 * time.Minute)
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, jwkscache.ErrUnavailable) {
		t.Fatalf("past maxStale: %v, want ErrUnavailable", err)
	}
	// Recovery: the endpoint comes back and keys return.
	srv.set(http.StatusOK, tokentest.JWKS(k1))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Lookup(context.Background(), "k1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("keys did not come back after the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadBodiesNeverReplaceGoodKeys(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	bodies := map[string]struct {
		status int
		body   []byte
	}{
		"empty key list (Better Auth right after rotation)": {200, []byte(`{"keys":[]}`)},
		"not JSON":             {200, []byte(`<html>oops</html>`)},
		"JSON but no keys":     {200, []byte(`{}`)},
		"only a symmetric key": {200, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}`)},
		"too large":            {200, []byte(`{"keys":[],"pad":"` + strings.Repeat("x", jwkscache.MaxBodySize) + `"}`)},
		"server error":         {500, []byte(`{"keys":[]}`)},
		"not found":            {404, nil},
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			srv := newJWKSServer(t, tokentest.JWKS(k1))
			c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 20 * time.Millisecond})
			srv.set(b.status, b.body)
			hits := srv.hits.Load()
			for srv.hits.Load() < hits+2 {
				time.Sleep(5 * time.Millisecond)
			}
			if _, err := c.Lookup(context.Background(), "k1"); err != nil {
				t.Fatalf("good key lost: %v", err)
			}
		})
	}
}

func TestFirstFetchFailureIsUnavailable(t *testing.T) {
	srv := newJWKSServer(t, []byte(`{"keys":[]}`))
	c := start(t, jwkscache.Config{URL: srv.URL, Cooldown: time.Hour})
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, jwkscache.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	srv := newJWKSServer(t, nil)
	url := srv.URL
	srv.Close() // nothing listens there any more
	c := start(t, jwkscache.Config{URL: url, FetchTimeout: time.Second})
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, jwkscache.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestParseSetSkipsUnusableKeys(t *testing.T) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed")
	noUse := ed.PublicJWK() // Better Auth sends neither use nor key_ops
	doc := fmt.Sprintf(`{"keys":[
		{"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
		{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo","kid":"x25519"},
		{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"enc","use":"enc"},
		%s,
		%s,
		%s
	]}`, weakRSA(t), mustJSON(noUse), mustJSON(noUse))
	keys, skipped, err := jwkscache.ParseSet([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["ed"].Family() != "EdDSA" {
		t.Fatalf("keys = %v", keys)
	}
	if len(skipped) != 5 {
		t.Fatalf("skipped = %d %q, want 5 (oct, X25519, enc, weak RSA, duplicate)", len(skipped), skipped)
	}
}

func TestHTTPSRequired(t *testing.T) {
	cases := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://auth.example.com/api/auth/jwks", false, true},
		{"http://auth.example.com/api/auth/jwks", false, false},
		{"http://auth.example.com/api/auth/jwks", true, true},
		{"http://127.0.0.1:3000/api/auth/jwks", false, true},
		{"http://localhost:3000/api/auth/jwks", false, true},
		{"http://[::1]:3000/api/auth/jwks", false, true},
		{"http://127.0.0.1.evil.com/api/auth/jwks", false, false},
		{"ftp://auth.example.com/jwks", true, false},
		{"/api/auth/jwks", false, false},
	}
	for _, tc := range cases {
		if err := jwkscache.CheckURL(tc.url, tc.insecure); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q, %v) = %v, want ok=%v", tc.url, tc.insecure, err, tc.ok)
		}
	}
}

func weakRSA(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwk.FromRaw(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = j.Set(jwk.KeyIDKey, "rsa-1024")
	b, _ := json.Marshal(j)
	return string(b)
}

func mustJSON(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}
