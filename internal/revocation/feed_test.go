package revocation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const secret = "0123456789abcdef0123456789abcdef-test"

// feedServer is the plugin's endpoint as the tests need it: it checks the secret,
// serves what was added after the cursor, and can go down.
type feedServer struct {
	*httptest.Server
	mu      sync.Mutex
	entries []revocation.Entry
	down    bool
	sinces  []string
}

func newFeedServer(t *testing.T) *feedServer {
	f := &feedServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if !revocation.SecretMatches(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), secret) {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		since := r.URL.Query().Get("since")
		f.sinces = append(f.sinces, since)
		n := 0
		if since != "" {
			n = len(since) // the cursor is the count of entries seen, as a string of x
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"cursor": strings.Repeat("x", len(f.entries)), "entries": f.entries[min(n, len(f.entries)):]})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *feedServer) add(e revocation.Entry) {
	f.mu.Lock()
	f.entries = append(f.entries, e)
	f.mu.Unlock()
}

func (f *feedServer) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func startFeed(t *testing.T, url string, clk *tokentest.Clock, failOpen bool) *revocation.Feed {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := revocation.New(revocation.Config{Issuer: "https://auth.example.com", URL: url, SecretFile: file,
		PollInterval: 20 * time.Millisecond, MaxStale: time.Minute, FailOpen: failOpen, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(context.Background())
	t.Cleanup(f.Stop)
	<-f.Ready()
	return f
}

func TestFeedAppliesRevocationsAndFailsClosed(t *testing.T) {
	srv := newFeedServer(t)
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	f := startFeed(t, srv.URL, clk, false)
	iat := clk.Now().Add(-time.Minute)
	if code, _ := f.Check("s1", "alice", iat, time.Time{}); code != "" {
		t.Fatalf("nothing revoked yet: %s", code)
	}
	srv.add(revocation.Entry{Kind: revocation.KindSession, SessionID: "s1", At: clk.Now().UnixMilli()})
	testkit.Eventually(t, "sign-out seen", 5*time.Second, func() bool { code, _ := f.Check("s1", "alice", iat, time.Time{}); return code == reason.SessionRevoked })
	if code, _ := f.Check("s2", "alice", iat, time.Time{}); code != "" {
		t.Fatalf("another session of the same user: %s", code)
	}
	srv.add(revocation.Entry{Kind: revocation.KindBan, UserID: "bob", At: clk.Now().UnixMilli()})
	testkit.Eventually(t, "ban seen", 5*time.Second, func() bool { code, _ := f.Check("b1", "bob", iat, time.Time{}); return code == reason.UserBanned })
	srv.add(revocation.Entry{Kind: revocation.KindUnban, UserID: "bob", At: clk.Now().UnixMilli()})
	testkit.Eventually(t, "unban seen", 5*time.Second, func() bool { code, _ := f.Check("b1", "bob", iat, time.Time{}); return code == "" })

	// Polls after the first carry the cursor, so each asks only for what is new.
	testkit.Eventually(t, "polls carry the cursor", 5*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.sinces[0] == "" && srv.sinces[len(srv.sinces)-1] == "xxx"
	})

	// The feed goes down: within maxStale the last state holds, past it the
	// issuer's tokens are refused.
	srv.setDown(true)
	clk.Add(30 * time.Second)
	if code, _ := f.Check("s2", "alice", iat, time.Time{}); code != "" {
		t.Fatalf("within maxStale: %s", code)
	}
	clk.Add(31 * time.Second)
	testkit.Eventually(t, "fail closed past maxStale", 5*time.Second, func() bool {
		code, _ := f.Check("s2", "alice", iat, time.Time{})
		return code == reason.RevocationUnavailable
	})
	srv.setDown(false)
	testkit.Eventually(t, "back after the outage", 5*time.Second, func() bool { code, _ := f.Check("s2", "alice", iat, time.Time{}); return code == "" })
}

func TestFeedFailOpen(t *testing.T) {
	srv := newFeedServer(t)
	srv.setDown(true)
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	f := startFeed(t, srv.URL, clk, true)
	if code, _ := f.Check("s1", "alice", clk.Now(), time.Time{}); code != "" {
		t.Fatalf("failOpen with the feed down: %s", code)
	}
}

func TestNewFeedValidates(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort"), 0o600)
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(secret), 0o600)
	for name, cfg := range map[string]revocation.Config{
		"no URL":         {Issuer: "i", SecretFile: good},
		"plain http":     {Issuer: "i", URL: "http://auth.example.com/feed", SecretFile: good},
		"missing secret": {Issuer: "i", URL: "https://auth.example.com/feed", SecretFile: filepath.Join(dir, "none")},
		"short secret":   {Issuer: "i", URL: "https://auth.example.com/feed", SecretFile: short},
	} {
		if _, err := revocation.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStateCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ms := now.UnixMilli()
	s := revocation.NewState([]revocation.Entry{
		{Kind: revocation.KindSession, SessionID: "s1", At: ms},
		{Kind: revocation.KindUser, UserID: "u1", At: ms},
		{Kind: revocation.KindBan, UserID: "u2", At: ms, Until: ms + 60_000},
		{Kind: revocation.KindBan, UserID: "u3", At: ms},
		{Kind: revocation.KindUnban, UserID: "u3", At: ms + 1},
	})
	cases := []struct {
		sid, user string
		iat, at   time.Time
		want      reason.Code
	}{
		{"s1", "x", now.Add(-time.Minute), now, reason.SessionRevoked},
		{"s9", "u1", now.Add(-time.Minute), now, reason.SessionRevoked},
		{"s9", "u1", now, now, reason.SessionRevoked}, // the same second counts as before
		{"s9", "u1", now.Add(time.Second), now.Add(time.Second), ""},
		{"s9", "u2", now, now.Add(59 * time.Second), reason.UserBanned},
		{"s9", "u2", now, now.Add(61 * time.Second), ""},
		{"s9", "u3", now, now, ""},
		{"", "", now, now, ""},
	}
	for _, tc := range cases {
		if got, _ := s.Check(tc.sid, tc.user, tc.iat, tc.at); got != tc.want {
			t.Errorf("Check(%q, %q, iat %s) = %q, want %q", tc.sid, tc.user, tc.iat.Sub(now), got, tc.want)
		}
	}
	// Entries older than the retention are dropped; bans are kept.
	if n := s.With(nil, ms+1).Len(); n != 1 {
		t.Errorf("after retention: %d entries, want the one ban", n)
	}
}
