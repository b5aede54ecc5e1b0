package online_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/online"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

var now = time.Unix(1_800_000_000, 0)

// getSession is Better Auth's endpoint as the tests need it: one valid credential
// of each kind, null for the rest, a delay, and a count of calls.
type getSession struct {
	*httptest.Server
	calls atomic.Int64
	delay time.Duration
	mu    sync.Mutex
	seen  []http.Header
}

func newGetSession(t *testing.T) *getSession {
	g := &getSession{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.calls.Add(1)
		g.mu.Lock()
		g.seen = append(g.seen, r.Header.Clone())
		delay := g.delay
		g.mu.Unlock()
		time.Sleep(delay)
		ok := r.Header.Get("Cookie") == "better-auth.session_token=good.sig" || r.Header.Get("Authorization") == "Bearer good.sig" || r.Header.Get("X-Api-Key") == "good-key"
		if !ok {
			_, _ = w.Write([]byte("null"))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"session": map[string]any{"id": "s-1", "userId": "u-1", "expiresAt": now.Add(time.Hour).UTC().Format(time.RFC3339Nano), "token": "good"},
			"user":    map[string]any{"id": "u-1", "email": "a@example.test", "uuid": "6639900d-cfe5-59ec-bd5c-e0e68598457e"},
		})
	}))
	t.Cleanup(g.Close)
	return g
}

func verifier(t *testing.T, url string, clk *time.Time) *online.Verifier {
	t.Helper()
	v, err := online.New(online.Config{Issuer: "https://auth.example.com", URL: url, Timeout: 200 * time.Millisecond, Now: func() time.Time { return *clk }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func code(err error) reason.Code {
	var re *reason.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func TestOnlineCacheAndKinds(t *testing.T) {
	g := newGetSession(t)
	clk := now
	v := verifier(t, g.URL, &clk)
	ctx := context.Background()
	cookie := online.Credential{Kind: online.SessionCookie, CookieName: "better-auth.session_token", Value: "good.sig", ForwardedFor: "203.0.113.7"}
	s, err := v.Check(ctx, cookie)
	if err != nil || s.Claims["sub"] != "u-1" || s.Claims["sid"] != "s-1" || s.Claims["uuid"] != "6639900d-cfe5-59ec-bd5c-e0e68598457e" {
		t.Fatalf("cookie: %+v %v", s, err)
	}
	if _, err := v.Check(ctx, cookie); err != nil || g.calls.Load() != 1 {
		t.Fatalf("second check: %v, %d calls, want the cached answer", err, g.calls.Load())
	}
	// Only the credential and the client address go to Better Auth.
	h := g.seen[0]
	if h.Get("X-Forwarded-For") != "203.0.113.7" || h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
		t.Fatalf("forwarded %v", h)
	}
	clk = clk.Add(11 * time.Second)
	if _, err := v.Check(ctx, cookie); err != nil || g.calls.Load() != 2 {
		t.Fatalf("after the TTL: %v, %d calls", err, g.calls.Load())
	}

	bad := online.Credential{Kind: online.BearerSession, Value: "bad.sig"}
	for range 3 {
		if _, err := v.Check(ctx, bad); code(err) != reason.TokenExpired {
			t.Fatalf("unknown bearer: %v", err)
		}
	}
	if g.calls.Load() != 3 {
		t.Fatalf("negative answers not cached: %d calls", g.calls.Load())
	}
	if _, err := v.Check(ctx, online.Credential{Kind: online.BearerSession, Value: "good.sig"}); err != nil {
		t.Fatalf("bearer: %v", err)
	}
	// API keys are asked every time by default: each use counts against the key.
	for range 2 {
		if _, err := v.Check(ctx, online.Credential{Kind: online.APIKey, Value: "good-key"}); err != nil {
			t.Fatalf("api key: %v", err)
		}
	}
	if g.calls.Load() != 6 {
		t.Fatalf("api key checks: %d calls, want 6", g.calls.Load())
	}
}

// TestOnlineSingleflight: 100 concurrent checks of one credential make one call.
func TestOnlineSingleflight(t *testing.T) {
	g := newGetSession(t)
	g.delay = 50 * time.Millisecond
	clk := now
	v := verifier(t, g.URL, &clk)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Check(context.Background(), online.Credential{Kind: online.BearerSession, Value: "good.sig"}); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || g.calls.Load() != 1 {
		t.Fatalf("%d failed, %d calls; want 0 and 1", failed.Load(), g.calls.Load())
	}
}

// TestOnlineFailsClosed: a slow or broken Better Auth is session_unavailable, and
// the failure is not cached: the next check asks again.
func TestOnlineFailsClosed(t *testing.T) {
	g := newGetSession(t)
	g.delay = time.Second
	clk := now
	v := verifier(t, g.URL, &clk)
	cred := online.Credential{Kind: online.BearerSession, Value: "good.sig"}
	if _, err := v.Check(context.Background(), cred); code(err) != reason.SessionUnavailable {
		t.Fatalf("slow get-session: %v", err)
	}
	g.mu.Lock()
	g.delay = 0
	g.mu.Unlock()
	if _, err := v.Check(context.Background(), cred); err != nil {
		t.Fatalf("after the outage: %v (a failure was cached)", err)
	}
	down := verifier(t, "http://127.0.0.1:1/api/auth/get-session", &clk)
	if _, err := down.Check(context.Background(), cred); code(err) != reason.SessionUnavailable {
		t.Fatalf("unreachable: %v", err)
	}
}
