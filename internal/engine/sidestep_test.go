package engine_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// sidestepDoc is the policy a new user writes from the README: an owner rule, a
// host-scoped admin rule, and default: authenticated, under which any request that
// slips past a rule is allowed with the caller's identity.
const sidestepDoc = `
issuers:
  - betterAuthURL: https://auth.example.com
rules:
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
  - name: admin
    hosts: ["api.example.com"]
    paths: ["/admin/**"]
    when: 'claims.role == "admin"'
default: authenticated
`

// TestSpellingsOfTheSameRequest sends Alice's valid token to Bob's data in every
// spelling a mainstream proxy or backend routes to the same handler. Each must be
// judged by the rule the plain spelling meets, or refused; none may fall through to
// the default and be allowed.
func TestSpellingsOfTheSameRequest(t *testing.T) {
	f := newFixture(t, sidestepDoc)
	alice := bearer(f.token(nil))
	bob := "/api/" + uuidB + "/tasks"
	cases := []struct {
		name         string
		method, host string
		path         string
		headers      func(*engine.Request)
		reason       reason.Code
		rule         string
	}{
		{"plain", "GET", "api.example.com", bob, nil, reason.OwnerMismatch, "own-tasks"},
		{"empty segment (nginx merge_slashes)", "GET", "api.example.com", "/api//" + uuidB + "/tasks", nil, reason.PathRejected, engine.RuleNone},
		{"leading //", "GET", "api.example.com", "//api/" + uuidB + "/tasks", nil, reason.PathRejected, engine.RuleNone},
		{"// before tasks", "GET", "api.example.com", "/api/" + uuidB + "//tasks", nil, reason.PathRejected, engine.RuleNone},
		{"upper-case literal (Express, ASP.NET Core)", "GET", "api.example.com", "/API/" + uuidB + "/tasks", nil, reason.OwnerMismatch, "own-tasks"},
		{"mixed-case literal", "GET", "api.example.com", "/Api/" + uuidB + "/TASKS", nil, reason.OwnerMismatch, "own-tasks"},
		{"trailing slash", "GET", "api.example.com", bob + "/", nil, reason.OwnerMismatch, "own-tasks"},
		{"percent-encoded letters", "GET", "api.example.com", "/%61pi/" + uuidB + "/t%61sks", nil, reason.OwnerMismatch, "own-tasks"},
		{"query string", "GET", "api.example.com", bob + "?x=/api/" + uuidA + "/tasks", nil, reason.OwnerMismatch, "own-tasks"},
		{"braced uuid", "GET", "api.example.com", "/api/%7B" + uuidA + "%7D/tasks", nil, reason.OwnerMismatch, "own-tasks"},
		{"uuid without hyphens", "GET", "api.example.com", "/api/" + strings.ReplaceAll(uuidA, "-", "") + "/tasks", nil, reason.OwnerMismatch, "own-tasks"},
		{"HEAD against a GET rule (Starlette)", "HEAD", "api.example.com", bob, nil, reason.OwnerMismatch, "own-tasks"},
		{"lower-case method", "delete", "api.example.com", bob, nil, reason.MethodRejected, engine.RuleNone},
		{"capitalised method", "Delete", "api.example.com", bob, nil, reason.MethodRejected, engine.RuleNone},
		{"method override through nginx", "POST", "api.example.com", "/api/" + uuidA + "/notes", func(r *engine.Request) { r.MethodOverride, r.CannotRemove = true, true }, reason.MethodRejected, engine.RuleNone},
		{"underscore override header through nginx", "POST", "api.example.com", "/api/" + uuidA + "/notes", func(r *engine.Request) {
			r.UnderscoreHeaders, r.CannotRemove = []string{"X_Http_Method_Override"}, true
		}, reason.HeaderRejected, engine.RuleNone},
		{"_method query parameter (Laravel, Symfony)", "POST", "api.example.com", "/api/" + uuidA + "/notes?_method=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"_METHOD", "POST", "api.example.com", "/api/" + uuidA + "/notes?a=1&_METHOD=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"escaped _method", "POST", "api.example.com", "/api/" + uuidA + "/notes?%5Fmethod=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"_method array", "POST", "api.example.com", "/api/" + uuidA + "/notes?_method[]=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"PHP turns . into _", "POST", "api.example.com", "/api/" + uuidA + "/notes?.method=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"PHP drops a leading space", "POST", "api.example.com", "/api/" + uuidA + "/notes?+_method=DELETE", nil, reason.MethodRejected, engine.RuleNone},
		{"; separates parameters", "POST", "api.example.com", "/api/" + uuidA + "/notes?a=b;_method=PUT", nil, reason.MethodRejected, engine.RuleNone},
		{"escaped long s folds to S (ASP.NET)", "GET", "api.example.com", "/api/" + uuidB + "/ta%C5%BFks", nil, reason.PathRejected, engine.RuleNone},
		{"escaped Kelvin sign", "GET", "api.example.com", "/api/" + uuidB + "/tas%E2%84%AAs", nil, reason.PathRejected, engine.RuleNone},
		{"Rails format suffix", "GET", "api.example.com", bob + ".json", nil, reason.OwnerMismatch, "own-tasks"},
		{"Rails format suffix on admin", "GET", "api.example.com", "/ADMIN.json", nil, reason.ConditionFalse, "admin"},
		{"admin", "GET", "api.example.com", "/admin/users", nil, reason.ConditionFalse, "admin"},
		{"admin, host with trailing dot", "GET", "api.example.com.", "/admin/users", nil, reason.ConditionFalse, "admin"},
		{"admin, upper-case host and port", "GET", "API.Example.com:443", "/admin/users", nil, reason.ConditionFalse, "admin"},
		{"admin, upper-case path", "GET", "api.example.com", "/ADMIN/users", nil, reason.ConditionFalse, "admin"},
		{"admin, host with two dots", "GET", "api.example.com..", "/admin/users", nil, reason.HostRejected, engine.RuleNone},
		{"admin, host with two colons", "GET", "api.example.com:443:1", "/admin/users", nil, reason.HostRejected, engine.RuleNone},
		{"admin, escaped host", "GET", "api%2eexample.com", "/admin/users", nil, reason.HostRejected, engine.RuleNone},
		{"admin, no host", "GET", "", "/admin/users", nil, reason.HostRejected, engine.RuleNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &engine.Request{Method: tc.method, Host: tc.host, Path: tc.path, Authorization: alice}
			if tc.headers != nil {
				tc.headers(req)
			}
			d := f.e.Decide(context.Background(), req)
			if d.Allow || d.Reason != tc.reason || d.Rule != tc.rule {
				t.Fatalf("allow %v reason %q rule %q (%s); want a deny %q by %q", d.Allow, d.Reason, d.Rule, d.Detail, tc.reason, tc.rule)
			}
		})
	}
}

// TestMethodOverrideNeverReachesTheBackend: where the proxy can remove headers
// (Envoy), an allowed request loses every method-override header.
func TestMethodOverrideNeverReachesTheBackend(t *testing.T) {
	f := newFixture(t, sidestepDoc)
	d := f.e.Decide(context.Background(), &engine.Request{Method: "POST", Host: "api.example.com", Path: "/api/" + uuidA + "/notes",
		Authorization: bearer(f.token(nil)), MethodOverride: true})
	if !d.Allow {
		t.Fatalf("denied: %+v", d)
	}
	for _, h := range []string{"x-http-method-override", "x-http-method", "x-method-override"} {
		if !slices.Contains(d.RemoveHeaders, h) {
			t.Errorf("%s not removed: %v", h, d.RemoveHeaders)
		}
	}
	// Rack and PHP read X_HTTP_METHOD_OVERRIDE as the override header too.
	d = f.e.Decide(context.Background(), &engine.Request{Method: "POST", Host: "api.example.com", Path: "/api/" + uuidA + "/notes",
		Authorization: bearer(f.token(nil)), UnderscoreHeaders: []string{"X_Http_Method_Override", "x-http_method"}})
	if !d.Allow || !slices.Contains(d.RemoveHeaders, "X_Http_Method_Override") || !slices.Contains(d.RemoveHeaders, "x-http_method") {
		t.Fatalf("underscore override spellings not removed: %+v", d)
	}
	// A parameter that merely contains "method" is fine.
	d = f.e.Decide(context.Background(), &engine.Request{Method: "POST", Host: "api.example.com", Path: "/api/" + uuidA + "/notes?payment_method=card&method=x",
		Authorization: bearer(f.token(nil))})
	if !d.Allow {
		t.Fatalf("ordinary query denied: %+v", d)
	}
}

// FuzzDecide: no request may make the engine panic or answer anything but a
// definite allow or deny.
func FuzzDecide(f *testing.F) {
	fx := newFixture(f, sidestepDoc)
	f.Add("GET", "api.example.com", "/api/"+uuidA+"/tasks?_method=x", "Bearer "+fx.token(nil))
	f.Add("POST", "a", "/%C3%A9/%25?%5Fmethod", "Bearer x.y.z")
	f.Add("delete", "API.example.com.:1", "/admin.json", "")
	f.Fuzz(func(t *testing.T, method, host, path, authorization string) {
		d := fx.e.Decide(context.Background(), &engine.Request{Method: method, Host: host, Path: path, Authorization: []string{authorization}})
		if d.Allow != (d.Status == 200) || !d.Allow && d.Reason == "" {
			t.Fatalf("decision %+v", d)
		}
	})
}
