//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// TestSpellingsNeverReachAnotherUsersData runs the policy a new user writes from the
// README, with default: authenticated (any request that slips past the owner rule
// is allowed with the caller's identity), through the shipped Envoy and nginx
// configs (nginx with its default merge_slashes on). Alice's valid token, sent to
// Bob's tasks in spellings that nginx, Spring or Express route to the same handler,
// must never reach the backend.
func TestSpellingsNeverReachAnotherUsersData(t *testing.T) {
	c := editedChain(t, "authenticated", "default: deny", "default: authenticated")

	alice := bearer(token(t, userA))
	bob := userB.UUID
	sawBob := func() int {
		return st.Recorder.Count(func(s stack.Seen) bool { return strings.Contains(strings.ToLower(s.Path), bob) })
	}
	cases := []struct {
		name, method, path string
		header             map[string]string
	}{
		{"plain", "GET", "/api/" + bob + "/tasks", nil},
		{"empty segment", "GET", "/api//" + bob + "/tasks", nil},
		{"leading //", "GET", "//api/" + bob + "/tasks", nil},
		{"// before tasks", "GET", "/api/" + bob + "//tasks", nil},
		{"upper-case literal", "GET", "/API/" + bob + "/tasks", nil},
		{"upper-case tasks", "GET", "/api/" + bob + "/TASKS", nil},
		{"upper-case uuid", "GET", "/api/" + strings.ToUpper(bob) + "/tasks", nil},
		{"trailing slash", "GET", "/api/" + bob + "/tasks/", nil},
		{"HEAD", "HEAD", "/api/" + bob + "/tasks", nil},
		{"host with trailing dot", "GET", "/api/" + bob + "/tasks", map[string]string{"Host": "api.example.com."}},
		{"lower-case method", "get", "/api/" + bob + "/tasks", nil},
		{"method override", "POST", "/api/" + bob + "/tasks", map[string]string{"X-HTTP-Method-Override": "GET"}},
		{"_method query parameter", "POST", "/api/" + bob + "/tasks?_method=GET", nil},
		{"escaped long s (ASP.NET folds it to S)", "GET", "/api/" + bob + "/ta%C5%BFks", nil},
	}
	for name, base := range c.URLs() {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				h := map[string]string{}
				for k, v := range alice {
					h[k] = v
				}
				for k, v := range tc.header {
					h[k] = v
				}
				before := sawBob()
				status := rawDo(t, base, tc.method, tc.path, h)
				if status < 400 || status >= 500 {
					t.Fatalf("status %d, want a 4xx refusal", status)
				}
				if sawBob() != before {
					t.Fatal("the backend saw a request for Bob's tasks")
				}
			})
		}
	}

	// The same chain still serves Alice her own tasks, in the spellings it accepts.
	for name, base := range c.URLs() {
		for _, p := range []string{"/api/" + userA.UUID + "/tasks", "/API/" + userA.UUID + "/tasks/"} {
			// extauthz allows both; FastAPI itself routes case-sensitively (404 is its answer).
			if status := rawDo(t, base, "GET", p, alice); status == 401 || status == 403 || status >= 500 {
				t.Errorf("%s %s: %d, want it let through to the backend", name, p, status)
			}
		}
	}
	if n, _ := c.Extauthz.Metric("extauthz_decisions_total", `reason="path_rejected"`); n < 6 {
		t.Errorf("path_rejected decisions = %v, want >= 6", n)
	}
}

// TestSmuggledHeadersNeverReachTheBackend: an allowed request's method-override
// header and underscore variants of identity headers never reach the backend. Envoy
// removes the override (headers_to_remove) and refuses underscores
// (headers_with_underscores_action: REJECT_REQUEST); nginx drops underscores
// (underscores_in_headers off) and extauthz refuses an override it cannot remove.
func TestSmuggledHeadersNeverReachTheBackend(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			marker := "/api/" + userA.UUID + "/tasks?smuggle=" + name
			h := bearer(tok)
			h["X-HTTP-Method-Override"] = "DELETE"
			status := rawDo(t, base, "GET", marker, h)
			// Envoy removes the override and lets the request through; the others
			// cannot, so extauthz refuses it (method_rejected: 400, which nginx's
			// auth_request can only pass on as 403).
			if removes(name) && status != 200 || !removes(name) && (status < 400 || status >= 500) {
				t.Fatalf("override: status %d", status)
			}
			if seen, ok := st.Recorder.Last(func(s stack.Seen) bool { return s.Path == marker }); ok && seen.Header.Get("X-Http-Method-Override") != "" {
				t.Fatal("the backend saw X-HTTP-Method-Override")
			}

			marker += "-underscore"
			h = bearer(tok)
			h["x_user_uuid"] = userB.UUID
			h["X_User_Email"] = userB.Email
			status = rawDo(t, base, "GET", marker, h)
			if status >= 500 {
				t.Fatalf("underscore: status %d", status)
			}
			if seen, ok := st.Recorder.Last(func(s stack.Seen) bool { return s.Path == marker }); ok {
				for k := range seen.Header {
					if strings.Contains(k, "_") {
						t.Fatalf("the backend saw %s: %q", k, seen.Header[k])
					}
				}
			}
		})
	}
}
