package engine_test

import (
	"context"
	"slices"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const answerDoc = `
issuers: [{betterAuthURL: https://auth.example.com}]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
  - name: profile
    paths: ["/api/profile"]
  - name: private
    paths: ["/api/private"]
    forwardCredentials: false
`

// TestAnswerMemo: a cached token's allow headers are built once per policy and
// rule and then shared, never across a deny, another rule, a reloaded policy or a
// request whose headers differ.
func TestAnswerMemo(t *testing.T) {
	e, key := enginetest.New(t, answerDoc, now, nil, token.NewCache(token.CacheConfig{}))
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	check := func(path string, extra func(*engine.Request)) engine.Decision {
		r := &engine.Request{Method: "GET", Host: "api.example.com", Path: path, Authorization: bearer(tok)}
		if extra != nil {
			extra(r)
		}
		return e.Check(context.Background(), "test", r)
	}
	tasks := "/api/" + uuidA + "/tasks"
	first := check(tasks, nil)
	if !first.Allow || first.Answer != nil {
		t.Fatalf("first allow: %+v (an answer is kept from the second allow on)", first)
	}
	second, third := check(tasks, nil), check(tasks, nil)
	if second.Answer == nil || third.Answer != second.Answer {
		t.Fatalf("answers %p %p: want one, shared", second.Answer, third.Answer)
	}
	if !slices.Equal(third.SetHeaders, first.SetHeaders) || !slices.Equal(third.RemoveHeaders, first.RemoveHeaders) {
		t.Fatalf("memoised headers %v %v differ from built ones %v %v", third.SetHeaders, third.RemoveHeaders, first.SetHeaders, first.RemoveHeaders)
	}
	if cap(third.SetHeaders) != len(third.SetHeaders) || cap(third.RemoveHeaders) != len(third.RemoveHeaders) {
		t.Fatal("shared slices have spare capacity: an append by a front door would write into them")
	}

	// The owner rule still decides per request: another user's path is denied.
	if d := check("/api/"+uuidB+"/tasks", nil); d.Allow || d.Answer != nil {
		t.Fatalf("other user's tasks: %+v", d)
	}
	// Another rule gets an answer of its own.
	check("/api/profile", nil)
	if d := check("/api/profile", nil); d.Answer == nil || d.Answer == third.Answer || d.Rule != "profile" {
		t.Fatalf("profile: %+v", d)
	}
	// A request carrying a variant of an identity header must have it removed.
	d := check(tasks, func(r *engine.Request) { r.UnderscoreHeaders = []string{"x_user_uuid"} })
	if d.Answer != nil || !slices.Contains(d.RemoveHeaders, "x_user_uuid") {
		t.Fatalf("with x_user_uuid: %+v", d)
	}
	if slices.Contains(third.RemoveHeaders, "x_user_uuid") {
		t.Fatal("a request's variant leaked into the shared answer")
	}
	// A rule that strips credentials depends on the request's cookies.
	for range 3 {
		if d := check("/api/private", nil); !d.Allow || d.Answer != nil {
			t.Fatalf("private: %+v", d)
		}
	}

	// A reloaded policy with other identity headers is never answered from the old one.
	p, err := policy.Load([]byte(`
issuers: [{betterAuthURL: https://auth.example.com}]
identity:
  headers: { x-user-id: sub }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`))
	if err != nil {
		t.Fatal(err)
	}
	s := *e.Current()
	s.Policy = p
	e.Swap(&s)
	for i := range 3 {
		d := check(tasks, nil)
		names := []string{}
		for _, h := range d.SetHeaders {
			names = append(names, h.Name)
		}
		if !d.Allow || !slices.Equal(names, []string{"x-user-id", "x-auth-method"}) || d.Answer == nil || d.Answer == third.Answer {
			t.Fatalf("after reload, check %d: %+v", i+1, d)
		}
	}
}

// TestAnswerMemoWithShadowRules: a shadow rule's evaluation neither builds nor
// replaces the deciding rule's answer, and with memoisation off none is kept.
func TestAnswerMemoWithShadowRules(t *testing.T) {
	doc := `
issuers: [{betterAuthURL: https://auth.example.com}]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid }
rules:
  - name: admin-v2
    mode: shadow
    paths: ["/api/**"]
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`
	e, key := enginetest.New(t, doc, now, nil, token.NewCache(token.CacheConfig{}))
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	req := &engine.Request{Method: "GET", Host: "api.example.com", Path: "/api/" + uuidA + "/tasks", Authorization: bearer(tok)}
	e.Check(context.Background(), "test", req)
	first := e.Check(context.Background(), "test", req)
	for range 5 {
		d := e.Check(context.Background(), "test", req)
		if !d.Allow || d.Answer == nil || d.Answer != first.Answer || len(d.Shadow) != 1 || !d.Shadow[0].Allow {
			t.Fatalf("%+v (answer %p, first %p)", d, d.Answer, first.Answer)
		}
	}

	off := engine.New(engine.Config{AnswerBytes: -1})
	off.Swap(e.Current())
	for range 3 {
		if d := off.Check(context.Background(), "test", req); !d.Allow || d.Answer != nil || len(d.SetHeaders) == 0 {
			t.Fatalf("memoisation off: %+v", d)
		}
	}
}
