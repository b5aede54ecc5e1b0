package engine_test

import (
	"context"
	"slices"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
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
