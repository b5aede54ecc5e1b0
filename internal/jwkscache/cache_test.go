package jwkscache_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/prometheus/common/expfmt"

	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

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
	srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k1))
	c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 50 * time.Millisecond})
	if _, err := c.Lookup(context.Background(), "k1"); err != nil {
		t.Fatal(err)
	}
	srv.Set(http.StatusOK, tokentest.JWKS(k1, k2))
	testkit.Eventually(t, "background refresh sees k2", 5*time.Second, func() bool { return len(c.Keys()) == 2 })
}

func TestRotationUnknownKidRefetchesOnce(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	k2 := tokentest.NewKey(jwa.EdDSA, "k2")
	srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k1))
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	c := start(t, jwkscache.Config{URL: srv.URL, Name: "iss", RefreshInterval: time.Hour, Cooldown: time.Hour, Metrics: m})
	// Better Auth rotates: the JWKS now lists [old, new] and a token names the new kid.
	srv.Set(http.StatusOK, tokentest.JWKS(k1, k2))
	before := srv.Hits()
	if _, err := c.Lookup(context.Background(), "k2"); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if got := srv.Hits() - before; got != 1 {
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
	srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k1))
	m := metrics.New(prometheus.NewRegistry())
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	c := start(t, jwkscache.Config{URL: srv.URL, Name: "iss", RefreshInterval: time.Hour, Cooldown: 30 * time.Second, Metrics: m, Now: clk.Now})
	base := srv.Hits()

	// 200 concurrent requests with random kids: one refetch, shared.
	var wg sync.WaitGroup
	var unknown atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Lookup(context.Background(), fmt.Sprintf("random-%d", i)); errors.Is(err, keyset.ErrUnknownKID) {
				unknown.Add(1)
			}
		}()
	}
	wg.Wait()
	if unknown.Load() != 200 {
		t.Fatalf("unknown kids denied = %d, want 200", unknown.Load())
	}
	if got := srv.Hits() - base; got != 1 {
		t.Fatalf("fetches during the flood = %d, want 1", got)
	}
	// Within the cooldown: no fetch at all, counted as suppressed.
	for i := range 1000 {
		_, _ = c.Lookup(context.Background(), fmt.Sprintf("again-%d", i))
	}
	if got := srv.Hits() - base; got != 1 {
		t.Fatalf("fetches within cooldown = %d, want 1", got)
	}
	if s := testutil.ToFloat64(m.RefetchSuppressedCounter("iss")); s < 1000 {
		t.Fatalf("suppressed = %v, want >= 1000", s)
	}
	// After the cooldown one more fetch is allowed.
	clk.Add(31 * time.Second)
	_, _ = c.Lookup(context.Background(), "after-cooldown")
	if got := srv.Hits() - base; got != 2 {
		t.Fatalf("fetches after cooldown = %d, want 2", got)
	}
}

func TestOutageKeepsKeysUntilMaxStale(t *testing.T) {
	k1 := tokentest.NewKey(jwa.EdDSA, "k1")
	srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k1))
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 20 * time.Millisecond, MaxStale: time.Hour, Now: clk.Now})
	srv.Set(http.StatusServiceUnavailable, []byte("down"))
	hits := srv.Hits()
	testkit.Eventually(t, "several failed refreshes", 5*time.Second, func() bool { return srv.Hits() >= hits+3 })
	clk.Add(59 * time.Minute)
	if _, err := c.Lookup(context.Background(), "k1"); err != nil {
		t.Fatalf("stale but within maxStale: %v", err)
	}
	clk.Add(2 * time.Minute)
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, keyset.ErrUnavailable) {
		t.Fatalf("past maxStale: %v, want ErrUnavailable", err)
	}
	// Recovery: the endpoint comes back and keys return.
	srv.Set(http.StatusOK, tokentest.JWKS(k1))
	testkit.Eventually(t, "keys come back after the outage", 5*time.Second, func() bool {
		_, err := c.Lookup(context.Background(), "k1")
		return err == nil
	})
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
			srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k1))
			c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 20 * time.Millisecond})
			srv.Set(b.status, b.body)
			hits := srv.Hits()
			testkit.Eventually(t, "two refreshes of the bad body", 5*time.Second, func() bool { return srv.Hits() >= hits+2 })
			if _, err := c.Lookup(context.Background(), "k1"); err != nil {
				t.Fatalf("good key lost: %v", err)
			}
		})
	}
}

func TestFirstFetchFailureIsUnavailable(t *testing.T) {
	srv := tokentest.NewJWKSServer(t, []byte(`{"keys":[]}`))
	c := start(t, jwkscache.Config{URL: srv.URL, Cooldown: time.Hour})
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, keyset.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	srv := tokentest.NewJWKSServer(t, nil)
	url := srv.URL
	srv.Close() // nothing listens there any more
	c := start(t, jwkscache.Config{URL: url, FetchTimeout: time.Second})
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, keyset.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestTooManyKeysKeepsTheLastGoodSet(t *testing.T) {
	k := tokentest.NewKey(jwa.EdDSA, "k1")
	srv := tokentest.NewJWKSServer(t, tokentest.JWKS(k))
	c := start(t, jwkscache.Config{URL: srv.URL, RefreshInterval: 20 * time.Millisecond})
	keys := make([]*tokentest.Key, keyset.MaxKeys+1)
	for i := range keys {
		keys[i] = tokentest.NewKey(jwa.EdDSA, fmt.Sprint("n", i))
	}
	srv.Set(200, tokentest.JWKS(keys...))
	hits := srv.Hits()
	testkit.Eventually(t, "two refreshes of the oversized set", 5*time.Second, func() bool { return srv.Hits() >= hits+2 })
	if got, err := c.Lookup(context.Background(), "k1"); err != nil || got == nil {
		t.Fatalf("lost the good key: %v", err)
	}
}

func TestRedirectNeverLeavesHTTPS(t *testing.T) {
	plain := tokentest.NewJWKSServer(t, tokentest.JWKS(tokentest.NewKey(jwa.EdDSA, "k1")))
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL, http.StatusFound)
	}))
	defer tlsSrv.Close()
	c, err := jwkscache.New(jwkscache.Config{URL: tlsSrv.URL, Client: redirectClient(tlsSrv)})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	defer c.Stop()
	<-c.Ready()
	if _, err := c.Lookup(context.Background(), "k1"); !errors.Is(err, keyset.ErrUnavailable) {
		t.Fatalf("an https JWKS redirected to http (loopback) was used: %v", err)
	}
}

// redirectClient is the cache's own client, made to trust the test server's certificate.
func redirectClient(srv *httptest.Server) *http.Client {
	c := jwkscache.NewHTTPClient(time.Second, false)
	c.Transport = srv.Client().Transport
	return c
}

// An issuer whose keys have never been fetched must have series at start, or the
// alerts that compare them would find nothing to fire on.
func TestNeverFetchedIssuerHasSeries(t *testing.T) {
	srv := tokentest.NewJWKSServer(t, []byte("{}"))
	srv.Set(http.StatusServiceUnavailable, []byte("down"))
	reg := prometheus.NewRegistry()
	pool := jwkscache.NewPool(context.Background(), jwkscache.PoolConfig{Metrics: metrics.New(reg)})
	defer pool.Retain(nil)
	cfg := jwkscache.Config{URL: srv.URL, Name: "iss", RefreshInterval: time.Hour, Cooldown: time.Hour}
	c, err := pool.Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-c.Ready()
	want := `
# HELP extauthz_jwks_last_success_timestamp_seconds Unix time of the last successful JWKS fetch of each issuer.
# TYPE extauthz_jwks_last_success_timestamp_seconds gauge
extauthz_jwks_last_success_timestamp_seconds{issuer="iss"} 0
# HELP extauthz_jwks_keys Usable keys in the cached JWKS of each issuer.
# TYPE extauthz_jwks_keys gauge
extauthz_jwks_keys{issuer="iss"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "extauthz_jwks_last_success_timestamp_seconds", "extauthz_jwks_keys"); err != nil {
		t.Fatal(err)
	}
	if text := exposition(t, reg); !strings.Contains(text, `extauthz_jwks_refresh_total{issuer="iss",result="success",trigger="background"} 0`) {
		t.Fatalf("no zero success series for a never-fetched issuer:\n%s", text)
	}

	// The same issuer with other intervals: the new cache starts, the old one stops,
	// and the issuer's series stay.
	cfg.RefreshInterval = 2 * time.Hour
	c2, err := pool.Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool.Retain([]*jwkscache.Cache{c2})
	if n, err := testutil.GatherAndCount(reg, "extauthz_jwks_keys"); err != nil || n != 1 {
		t.Fatalf("jwks_keys series after a same-issuer swap = %d (%v), want 1", n, err)
	}
	pool.Retain(nil)
	if n, err := testutil.GatherAndCount(reg, "extauthz_jwks_keys", "extauthz_jwks_refresh_total"); err != nil || n != 0 {
		t.Fatalf("series after the issuer left = %d (%v), want 0", n, err)
	}
}

// exposition is what /metrics would show.
func exposition(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
