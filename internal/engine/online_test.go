package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// TestOnlineCredentials: a bearer-plugin token, an API key and a session cookie
// without the signed cache are checked at the issuer's get-session, get the same
// identity headers, and (the cookie) the CSRF check.
func TestOnlineCredentials(t *testing.T) {
	var calls atomic.Int64
	ba := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/api/auth/get-session" || r.URL.Query().Get("disableCookieCache") != "true" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer good.sig" && r.Header.Get("X-Api-Key") != "good-key" && r.Header.Get("Cookie") != "better-auth.session_token=good.sig" {
			_, _ = w.Write([]byte("null"))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"session": map[string]any{"id": "s-1", "userId": "u-1", "expiresAt": now.Add(time.Hour).UTC().Format(time.RFC3339Nano)},
			"user":    map[string]any{"id": "u-1", "uuid": uuidA},
		})
	}))
	defer ba.Close()
	doc := `
issuers:
  - betterAuthURL: ` + ba.URL + `
    credentials: [jwt, sessionCookie, bearerSession, apiKey]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-session-id: sid }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`
	e, _ := enginetest.New(t, doc, now, nil, nil)
	own := "/api/" + uuidA + "/tasks"
	cases := []struct {
		name   string
		req    engine.Request
		reason reason.Code
		method string
	}{
		{"bearer-plugin token", engine.Request{Method: "GET", Path: own, Authorization: []string{"Bearer good.sig"}}, "", "session"},
		{"unknown bearer-plugin token", engine.Request{Method: "GET", Path: own, Authorization: []string{"Bearer bad.sig"}}, reason.TokenExpired, ""},
		{"API key", engine.Request{Method: "GET", Path: own, APIKey: "good-key"}, "", "api-key"},
		{"session cookie without the cache", engine.Request{Method: "GET", Path: own, Cookies: []string{"better-auth.session_token=good.sig"}}, "", "session"},
		{"cookie POST from elsewhere", engine.Request{Method: "POST", Path: own, Origin: "https://evil.example", Cookies: []string{"better-auth.session_token=good.sig"}}, reason.CSRFOriginMismatch, ""},
		{"API key POST needs no Origin", engine.Request{Method: "POST", Path: own, APIKey: "good-key"}, "", "api-key"},
	}
	for _, tc := range cases {
		tc.req.Host = "api.example.com"
		d := e.Decide(context.Background(), &tc.req)
		if d.Reason != tc.reason || d.Allow != (tc.reason == "") {
			t.Errorf("%s: %+v", tc.name, d)
			continue
		}
		if !d.Allow {
			continue
		}
		got := map[string]string{}
		for _, h := range d.SetHeaders {
			got[h.Name] = h.Value
		}
		if got["x-user-id"] != "u-1" || got["x-user-uuid"] != uuidA || got["x-session-id"] != "s-1" || got["x-auth-method"] != tc.method {
			t.Errorf("%s: headers %v", tc.name, got)
		}
	}
}

// TestShadowRulesCallNoBetterAuth: a shadow rule before a public rule never
// makes the public request wait for get-session: an API key is not checked for
// it (its would-be decision is unknown), while a rule that decides still checks it.
func TestShadowRulesCallNoBetterAuth(t *testing.T) {
	var calls atomic.Int64
	ba := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = w.Write([]byte("null"))
	}))
	defer ba.Close()
	doc := `
issuers:
  - betterAuthURL: ` + ba.URL + `
    credentials: [jwt, apiKey]
rules:
  - {name: docs-v2, mode: shadow, paths: ["/docs/**"]}
  - {name: docs, paths: ["/docs/**"], public: true}
  - {name: api, paths: ["/api/**"]}
`
	e, _ := enginetest.New(t, doc, now, nil, nil)
	for i := range 3 {
		d := e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "a.example.com", Path: "/docs/x", APIKey: fmt.Sprintf("random-%d", i)})
		if !d.Allow || d.Rule != "docs" || len(d.Shadow) != 1 || !d.Shadow[0].Unknown {
			t.Fatalf("decision %+v", d)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d get-session calls for a shadow rule", n)
	}
	if d := e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "a.example.com", Path: "/api/x", APIKey: "k"}); d.Allow || calls.Load() != 1 {
		t.Fatalf("an enforcing rule: %+v, %d calls", d, calls.Load())
	}
}
