//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// TestBetterAuthExampleOnPostgres runs examples/better-auth for real: PostgreSQL from
// Debian, the migration the example ships (Better Auth's tables including jwks and
// session.token, then schema.sql with the uuid column), sign-ups through the example's
// hook, and its tokens through Envoy and extauthz.
func TestBetterAuthExampleOnPostgres(t *testing.T) {
	pg, ba := startExample(t)

	alice, err := ba.SignUp("Alice")
	if err != nil {
		t.Fatalf("%v\n%s", err, ba.Proc.Logs())
	}
	bob, err := ba.SignUp("Bob")
	if err != nil {
		t.Fatal(err)
	}
	// The seed's pitfalls are solved: the tables exist and uuid is a real UUID column.
	out, err := pg.Query(`SELECT count(*) FROM jwks; SELECT data_type FROM information_schema.columns WHERE table_name = 'user' AND column_name = 'uuid'; SELECT column_name FROM information_schema.columns WHERE table_name = 'session' AND column_name = 'token'`)
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(out); len(f) != 3 || f[1] != "uuid" || f[2] != "token" {
		t.Fatalf("schema: %q", out)
	}
	// The hook gave each user a first task, keyed by the database's uuid.
	owner, err := pg.Query(`SELECT user_uuid FROM tasks t JOIN "user" u ON u.uuid = t.user_uuid WHERE u.id = '` + alice.ID + `'`)
	if err != nil || strings.TrimSpace(owner) != alice.UUID {
		t.Fatalf("Alice's welcome task: %q %v", owner, err)
	}

	tok := token(t, alice)
	if got := header(t, tok)["alg"]; got != "EdDSA" {
		t.Fatalf("alg %s", got)
	}
	_, env := chain(t, stack.Policy(ba.URL, ""))
	if a := call(t, "GET", env.URL+tasksPath(alice.UUID), bearer(tok)); a.status != 200 || !strings.Contains(a.body, alice.UUID) {
		t.Fatalf("Alice's tasks: %d %s", a.status, a.body)
	}
	if a := call(t, "GET", env.URL+tasksPath(bob.UUID), bearer(tok)); a.status != 403 {
		t.Fatalf("Bob's tasks with Alice's token: %d", a.status)
	}
}

// startExample runs PostgreSQL and the shipped Better Auth example on it, until the
// test ends.
func startExample(t *testing.T) (*stack.Postgres, *stack.BetterAuth) {
	t.Helper()
	dir := t.TempDir()
	pg, err := stack.StartPostgres(tools, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Proc.Stop)
	ba, err := stack.StartExampleBetterAuth(tools, dir, pg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ba.Proc.Stop)
	return pg, ba
}
