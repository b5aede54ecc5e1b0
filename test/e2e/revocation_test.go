//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// revocationPolicy is the stack's policy with revocation through the example's
// feed (the defaults, poll every second, except a short maxStale so that the
// outage case is quick) or straight from its database.
func revocationPolicy(t *testing.T, ba *stack.BetterAuth, pg *stack.Postgres, mode string) string {
	revocation := fmt.Sprintf("{ secretFile: %s, maxStale: 4s }", ba.FeedSecretFile)
	if mode == "postgres" {
		dsn := filepath.Join(t.TempDir(), "dsn")
		if err := os.WriteFile(dsn, []byte(pg.URL), 0o600); err != nil {
			t.Fatal(err)
		}
		revocation = fmt.Sprintf("{ postgres: { dsnFile: %s } }", dsn)
	}
	return stack.RevocationPolicy(ba.URL, revocation)
}

// TestRevocationOnPostgres runs the shipped example (PostgreSQL, the admin plugin
// and the extauthz plugin) behind the real Envoy, with revocation through the
// plugin's feed and then straight from the database: a signed-out session's JWT, a
// banned user's, and the other sessions of revoke-other-sessions stop working within
// the bound (the poll interval, or the database mode's 2 s cache); the revoking
// session keeps working; and when the source is gone, the tokens are refused.
func TestRevocationOnPostgres(t *testing.T) {
	for _, mode := range []string{"feed", "postgres"} {
		t.Run(mode, func(t *testing.T) { revocationScenarios(t, mode) })
	}
}

func revocationScenarios(t *testing.T, mode string) {
	bound := 2 * time.Second // the feed polls every second
	if mode == "postgres" {
		bound = 3 * time.Second // a live session is remembered for 2 s
	}
	pg, ba := startExample(t)
	ext, env := chain(t, revocationPolicy(t, ba, pg, mode))
	tasks := func(u *stack.User, tok string) int {
		return call(t, "GET", env.URL+tasksPath(u.UUID), bearer(tok)).status
	}
	// deniedWithin polls until tok is refused, and returns how long that took.
	deniedWithin := func(u *stack.User, tok string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for tasks(u, tok) != 401 {
			if time.Since(start) > limit {
				t.Fatalf("token still allowed after %s", limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}

	alice, err := ba.SignUp("Alice")
	if err != nil {
		t.Fatalf("%v\n%s", err, ba.Proc.Logs())
	}
	t.Run("sign-out", func(t *testing.T) {
		var delays []time.Duration
		for range 10 {
			s, err := alice.SignIn()
			if err != nil {
				t.Fatal(err)
			}
			tok := token(t, s)
			if st := tasks(alice, tok); st != 200 {
				t.Fatalf("before sign-out: %d", st)
			}
			if _, err := s.Post("/api/auth/sign-out", map[string]any{}); err != nil {
				t.Fatal(err)
			}
			delays = append(delays, deniedWithin(alice, tok, bound))
		}
		slices.Sort(delays)
		t.Logf("%s: sign-out to deny over %d trials: median %s, max %s", mode, len(delays),
			delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
		if n, _ := ext.Metric("extauthz_decisions_total", `reason="session_revoked"`); n < 10 {
			t.Errorf("session_revoked decisions %v, want >= 10", n)
		}
	})

	t.Run("revoke-other-sessions", func(t *testing.T) {
		here, err := alice.SignIn()
		if err != nil {
			t.Fatal(err)
		}
		there, err := alice.SignIn()
		if err != nil {
			t.Fatal(err)
		}
		hereTok, thereTok := token(t, here), token(t, there)
		if _, err := here.Post("/api/auth/revoke-other-sessions", map[string]any{}); err != nil {
			t.Fatal(err)
		}
		deniedWithin(alice, thereTok, bound)
		if st := tasks(alice, hereTok); st != 200 {
			t.Fatalf("the session that revoked the others: %d", st)
		}
	})

	t.Run("ban", func(t *testing.T) {
		admin, err := ba.SignUp("Admin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pg.Query(`UPDATE "user" SET role = 'admin' WHERE id = '` + admin.ID + `'`); err != nil {
			t.Fatal(err)
		}
		bob, err := ba.SignUp("Bob")
		if err != nil {
			t.Fatal(err)
		}
		tok := token(t, bob)
		if st := tasks(bob, tok); st != 200 {
			t.Fatalf("before the ban: %d", st)
		}
		if _, err := admin.Post("/api/auth/admin/ban-user", map[string]any{"userId": bob.ID, "banReason": "e2e"}); err != nil {
			t.Fatal(err)
		}
		took := deniedWithin(bob, tok, bound)
		t.Logf("%s: ban to deny: %s", mode, took.Round(time.Millisecond))
		// The feed says banned; the database says the banned user's sessions are gone.
		want := `reason="user_banned"`
		if mode == "postgres" {
			want = `reason="session_revoked"`
		}
		if n, _ := ext.Metric("extauthz_decisions_total", want); n < 1 {
			t.Errorf("%s decisions %v, want >= 1", want, n)
		}
		// Lifted: a new session of Bob works again once the unban is seen.
		if _, err := admin.Post("/api/auth/admin/unban-user", map[string]any{"userId": bob.ID}); err != nil {
			t.Fatal(err)
		}
		again, err := bob.SignIn()
		if err != nil {
			t.Fatal(err)
		}
		fresh := token(t, again)
		if ok, _ := testkit.Poll(bound, func() bool { return tasks(bob, fresh) == 200 }); !ok {
			t.Fatalf("after the unban: %d", tasks(bob, fresh))
		}
		// A refused unban (no admin session) records nothing: the feed is not writable by anyone.
		stranger, err := ba.SignUp("Stranger")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stranger.Post("/api/auth/admin/unban-user", map[string]any{"userId": bob.ID}); err == nil {
			t.Fatal("a non-admin unbanned a user")
		}
	})

	// The org recipe does not depend on the revocation mode: it runs with the feed.
	orgs := func(t *testing.T) {
		owner, err := ba.SignUp("Owner")
		if err != nil {
			t.Fatal(err)
		}
		outsider, err := ba.SignUp("Outsider")
		if err != nil {
			t.Fatal(err)
		}
		b, err := owner.Post("/api/auth/organization/create", map[string]any{"name": "Acme", "slug": fmt.Sprint("acme-", time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		var org struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &org); err != nil || org.ID == "" {
			t.Fatalf("organization/create: %s %v", b, err)
		}
		path := "/orgs/" + org.ID + "/settings"
		// The owner's token carries {orgId: "owner"}: allowed (the backend has no such
		// route, so 404 is its answer); the outsider's is not_member.
		if st := call(t, "GET", env.URL+path, bearer(token(t, owner))).status; st == 401 || st == 403 {
			t.Fatalf("the org's owner: %d", st)
		}
		if st := call(t, "GET", env.URL+path, bearer(token(t, outsider))).status; st != 403 {
			t.Fatalf("an outsider: %d", st)
		}
		if n, _ := ext.Metric("extauthz_decisions_total", `reason="not_member"`); n < 1 {
			t.Errorf("not_member decisions %v, want >= 1", n)
		}
	}
	if mode == "feed" {
		t.Run("organizations", orgs)
	}

	t.Run("source gone", func(t *testing.T) {
		s, err := alice.SignIn()
		if err != nil {
			t.Fatal(err)
		}
		tok := token(t, s)
		if st := tasks(alice, tok); st != 200 {
			t.Fatalf("before the outage: %d", st)
		}
		if mode == "postgres" {
			pg.Proc.Stop()
		} else {
			ba.Proc.Stop()
		}
		deniedWithin(alice, tok, 10*time.Second) // maxStale is 4s; the database cache 2s
		if n, _ := ext.Metric("extauthz_decisions_total", `reason="revocation_unavailable"`); n < 1 {
			t.Errorf("revocation_unavailable decisions %v, want >= 1", n)
		}
	})
}
