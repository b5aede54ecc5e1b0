package engine

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// TestAnswerBudget: memoised answers stop at the budget, and the budget comes
// back once the garbage collector frees the answers of tokens no longer cached.
func TestAnswerBudget(t *testing.T) {
	const iss, uuid = "https://auth.example.com", "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	now := time.Unix(1_800_000_000, 0)
	p, err := policy.Load([]byte(`
issuers: [{betterAuthURL: https://auth.example.com}]
identity: { headers: { x-user-id: sub, x-user-uuid: uuid } }
rules: [{ name: own-tasks, paths: ["/api/{user_id}/tasks"], owner: { param: user_id, claim: uuid } }]
`))
	if err != nil {
		t.Fatal(err)
	}
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	keys, _, err := keyset.Parse(tokentest.JWKS(key))
	if err != nil {
		t.Fatal(err)
	}
	cache := token.NewCache(token.CacheConfig{})
	snap, err := NewSnapshot(p, SameKeys(keys), token.Config{Cache: cache, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const room = 3
	e := New(Config{AnswerBytes: room * 400})
	e.Swap(snap)
	memoised := func(i int) bool {
		tok := key.Sign(tokentest.Claims(iss, "user", uuid, now.Add(-time.Duration(i)*time.Second)), nil)
		req := &Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuid + "/tasks", Authorization: []string{"Bearer " + tok}}
		var d Decision
		for range 2 {
			if d = e.Decide(context.Background(), req); !d.Allow {
				t.Fatalf("token %d: %+v", i, d)
			}
		}
		return d.Answer != nil
	}
	n := 0
	for i := range 10 {
		if memoised(i) {
			n++
		}
	}
	if n == 0 || n > room {
		t.Fatalf("%d of 10 answers memoised, want 1..%d", n, room)
	}
	if used := e.answers.used.Load(); used > e.answers.limit.Load() {
		t.Fatalf("budget overdrawn: %d of %d", used, e.answers.limit.Load())
	}
	// A new snapshot with a new cache: the old cache, and the answers its entries
	// hold, become garbage.
	fresh := func() *Snapshot {
		s, err := NewSnapshot(p, SameKeys(keys), token.Config{Cache: token.NewCache(token.CacheConfig{}), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e.Swap(fresh())
	snap, cache = nil, nil
	deadline := time.Now().Add(5 * time.Second)
	for e.answers.used.Load() != 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if used := e.answers.used.Load(); used != 0 {
		t.Fatalf("budget still holds %d bytes after the answers' cache was dropped", used)
	}
	if !memoised(50) {
		t.Fatal("no answer memoised once the budget was free again")
	}
}
