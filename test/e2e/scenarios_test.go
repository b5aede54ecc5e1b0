//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

func tasksPath(uuid string) string { return "/api/" + uuid + "/tasks" }

func TestOwnTasksReachBackendWithIdentity(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			a := call(t, "GET", base+tasksPath(userA.UUID)+"?limit=5", bearer(tok))
			if a.status != 200 || !strings.Contains(a.body, `"uuid":"`+userA.UUID+`"`) {
				t.Fatalf("status %d body %s", a.status, a.body)
			}
			seen, ok := st.Recorder.Last(func(s stack.Seen) bool { return strings.HasPrefix(s.Path, tasksPath(userA.UUID)) })
			if !ok {
				t.Fatal("backend saw nothing")
			}
			want := map[string]string{"X-User-Uuid": userA.UUID, "X-User-Id": userA.ID, "X-User-Email": userA.Email}
			for k, v := range want {
				if got := seen.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("backend saw %s = %q, want exactly %q", k, got, v)
				}
			}
		})
	}
}

func TestOtherUsersTasksForbidden(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			before := st.Recorder.Count(func(s stack.Seen) bool { return strings.Contains(s.Path, userB.UUID) })
			a := call(t, "GET", base+tasksPath(userB.UUID), bearer(tok))
			if a.status != 403 {
				t.Fatalf("status %d, want 403", a.status)
			}
			if st.Recorder.Count(func(s stack.Seen) bool { return strings.Contains(s.Path, userB.UUID) }) != before {
				t.Fatal("the backend saw a request for B's tasks")
			}
		})
	}
}

func TestUpperCaseUUIDInPath(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			if a := call(t, "GET", base+tasksPath(strings.ToUpper(userA.UUID)), bearer(tok)); a.status != 200 {
				t.Fatalf("status %d %s, want 200", a.status, a.body)
			}
		})
	}
}

func TestNoTokenIs401WithChallenge(t *testing.T) {
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			a := call(t, "GET", base+tasksPath(userA.UUID), nil)
			if a.status != 401 || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer realm=") {
				t.Fatalf("status %d, WWW-Authenticate %q", a.status, a.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(a.header.Get("WWW-Authenticate"), "error=") {
				t.Fatal("no token, yet an error code in the challenge (RFC 6750 §3.1)")
			}
		})
	}
}

func TestBadTokensAre401(t *testing.T) {
	good := token(t, userA)
	parts := strings.Split(good, ".")
	foreignUser, err := st.Foreign.SignUp("Eve")
	if err != nil {
		t.Fatal(err)
	}
	wrongAud := token(t, foreignUser)
	expiring := token(t, foreignUser) // also wrong audience, but expiry is checked first
	cases := map[string]string{
		"garbage":        "garbage",
		"tampered":       parts[0] + "." + strings.Replace(parts[1], parts[1][10:14], "AAAA", 1) + "." + parts[2],
		"wrong audience": wrongAud,
	}
	for name, base := range proxies() {
		for what, tok := range cases {
			t.Run(name+"/"+what, func(t *testing.T) {
				a := call(t, "GET", base+tasksPath(userA.UUID), bearer(tok))
				if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Fatalf("status %d, challenge %q", a.status, a.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	if n, _ := st.Extauthz.Metric("extauthz_decisions_total", `reason="audience_mismatch"`); n < 2 {
		t.Errorf("audience_mismatch decisions = %v, want >= 2", n)
	}
	// The foreign Better Auth's tokens live 2 s (+1 s leeway).
	time.Sleep(3500 * time.Millisecond)
	for name, base := range proxies() {
		if a := call(t, "GET", base+tasksPath(userA.UUID), bearer(expiring)); a.status != 401 {
			t.Errorf("%s: expired token: %d", name, a.status)
		}
	}
	if n, _ := st.Extauthz.Metric("extauthz_decisions_total", `reason="token_expired"`); n < 2 {
		t.Errorf("token_expired decisions = %v, want >= 2", n)
	}
}

func TestForgedIdentityHeaderIsReplaced(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			h := bearer(tok)
			h["X-User-Uuid"] = userB.UUID
			h["X-User-Email"] = userB.Email
			marker := "/api/" + userA.UUID + "/tasks?forged=" + name
			seen := reached(t, base, marker, h)
			if got := seen.Header.Values("X-User-Uuid"); len(got) != 1 || got[0] != userA.UUID {
				t.Fatalf("backend saw x-user-uuid %q, want only A's", got)
			}
			if got := seen.Header.Values("X-User-Email"); len(got) != 1 || got[0] != userA.Email {
				t.Fatalf("backend saw x-user-email %q, want only A's", got)
			}
		})
	}
}

func TestForgedHeaderOnPublicPathIsStripped(t *testing.T) {
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			seen := reached(t, base, "/healthz?public="+name, map[string]string{"X-User-Uuid": userB.UUID})
			if got := seen.Header.Values("X-User-Uuid"); len(got) != 0 {
				t.Fatalf("backend saw a client-sent x-user-uuid %q on a public path", got)
			}
		})
	}
}

func TestCORSPreflightWithoutToken(t *testing.T) {
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			path := tasksPath(userA.UUID) + "?preflight=" + name
			a := call(t, "OPTIONS", base+path, map[string]string{
				"Origin": "http://localhost:3000", "Access-Control-Request-Method": "DELETE",
			})
			if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
				t.Fatalf("preflight: %d, allow-origin %q", a.status, a.header.Get("Access-Control-Allow-Origin"))
			}
			if _, ok := st.Recorder.Last(func(s stack.Seen) bool { return s.Method == "OPTIONS" && s.Path == path }); !ok {
				t.Fatal("preflight did not reach the backend")
			}
			// An OPTIONS that is not a preflight is judged like any request: the
			// own-tasks rule does not list OPTIONS, so no rule allows it.
			if a := call(t, "OPTIONS", base+path, nil); a.status != 403 {
				t.Fatalf("bare OPTIONS: %d, want 403", a.status)
			}
		})
	}
}

func TestTraversalRefused(t *testing.T) {
	tok := token(t, userA)
	paths := []string{
		"/api/" + userA.UUID + "/../" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "/%2e%2e/" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "/%2E%2E/" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "%2F..%2F" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "/tasks/..%2F..%2F" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "/tasks/..;/..;/" + userB.UUID + "/tasks",
		"/api/" + userA.UUID + "%5C..%5C" + userB.UUID + "/tasks",
	}
	for name, base := range proxies() {
		for _, p := range paths {
			t.Run(name+p[len(userA.UUID)+5:], func(t *testing.T) {
				before := st.Recorder.Count(func(s stack.Seen) bool { return strings.Contains(s.Path, userB.UUID) })
				if status := rawGet(t, base, p, bearer(tok)); status < 400 || status >= 500 {
					t.Fatalf("status %d, want a 4xx refusal", status)
				}
				if st.Recorder.Count(func(s stack.Seen) bool { return strings.Contains(s.Path, userB.UUID) }) != before {
					t.Fatal("the backend saw the request")
				}
			})
		}
	}
}

func TestBackendCreatesTaskForOwner(t *testing.T) {
	tok := token(t, userA)
	req, _ := http.NewRequest("POST", st.Envoy.URL+tasksPath(userA.UUID), strings.NewReader(`{"title":"write e2e tests"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	a := call(t, "GET", st.Nginx.URL+tasksPath(userA.UUID), bearer(tok))
	if !strings.Contains(a.body, "write e2e tests") || !strings.Contains(a.body, `"owner":"`+userA.UUID+`"`) {
		t.Fatalf("list: %s", a.body)
	}
}

// TestForgedHeaderForAbsentClaimIsRemoved: when the token lacks the claim an
// identity header is for, extauthz sets no header, and the client's copy must
// still not reach the backend, through every shipped proxy: Envoy removes it
// (x-envoy-auth-headers-to-remove in HTTP mode), nginx sets it from an empty
// variable, Caddy's copy_headers deletes it before copying.
func TestForgedHeaderForAbsentClaimIsRemoved(t *testing.T) {
	c := editedChain(t, "absent-claim", "x-user-email: email", "x-user-email: workEmail")
	tok := token(t, userA)
	for name, base := range c.URLs() {
		t.Run(name, func(t *testing.T) {
			h := bearer(tok)
			h["X-User-Email"] = userB.Email
			marker := "/api/" + userA.UUID + "/tasks?absent=" + name
			seen := reached(t, base, marker, h)
			if got := seen.Header.Values("X-User-Email"); len(got) != 0 {
				t.Fatalf("backend saw the client's x-user-email %q for a claim the token lacks", got)
			}
			if got := seen.Header.Values("X-User-Uuid"); len(got) != 1 || got[0] != userA.UUID {
				t.Fatalf("backend saw x-user-uuid %q", got)
			}
		})
	}
}

// TestForwardedHostNeverReachesTheBackend: Rack 3 and Spring take the host from
// Forwarded: host= before anything else, so a client's Forwarded header would let
// the backend route by a host extauthz never judged; no shipped proxy passes it on.
func TestForwardedHostNeverReachesTheBackend(t *testing.T) {
	tok := token(t, userA)
	for name, base := range proxies() {
		t.Run(name, func(t *testing.T) {
			h := bearer(tok)
			h["Forwarded"] = "host=admin.example.com;proto=https"
			marker := "/api/" + userA.UUID + "/tasks?forwarded=" + name
			seen := reached(t, base, marker, h)
			if got := seen.Header.Values("Forwarded"); len(got) != 0 {
				t.Fatalf("backend saw the client's Forwarded %q", got)
			}
		})
	}
}

// TestForwardCredentialsFalse: a rule with forwardCredentials: false keeps the
// Authorization header and Better Auth's cookies from the backend (the app's own
// cookies stay) through both Envoy modes; nginx and Caddy cannot remove them, so
// such a request is refused there.
func TestForwardCredentialsFalse(t *testing.T) {
	c := editedChain(t, "nocreds", "    owner: { param: user_id, claim: uuid }\n", "    owner: { param: user_id, claim: uuid }\n    forwardCredentials: false\n")
	tok := token(t, userA)
	for name, base := range c.URLs() {
		t.Run(name, func(t *testing.T) {
			h := bearer(tok)
			h["Cookie"] = "better-auth.session_token=secret.sig; app=1"
			marker := "/api/" + userA.UUID + "/tasks?nocreds=" + name
			if !removes(name) {
				if a := call(t, "GET", base+marker, h); a.status < 400 || a.status >= 500 {
					t.Fatalf("status %d, want a refusal (the proxy cannot keep credentials back)", a.status)
				}
				return
			}
			seen := reached(t, base, marker, h)
			if got := seen.Header.Values("Authorization"); len(got) != 0 {
				t.Errorf("backend saw Authorization %q", got)
			}
			if got := seen.Header.Values("Cookie"); len(got) != 1 || got[0] != "app=1" {
				t.Errorf("backend saw Cookie %q, want only the app's own", got)
			}
			if got := seen.Header.Get("X-User-Uuid"); got != userA.UUID {
				t.Errorf("backend saw x-user-uuid %q", got)
			}
		})
	}
}

// reached GETs base+marker with header, wants a 200, and returns the request as
// the backend received it.
// editedChain runs every shipped proxy in front of an extauthz of its own, whose
// policy is the stack's with old replaced by new; the test's cleanup stops them.
func editedChain(t *testing.T, name, old, new string) *stack.Chain {
	t.Helper()
	base := stack.Policy(st.BetterAuth.URL, "")
	doc := strings.Replace(base, old, new, 1)
	if doc == base {
		t.Fatalf("the stack's policy no longer has %q", old)
	}
	c, err := stack.StartChain(tools, workDir, name, doc, st.Recorder.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func reached(t *testing.T, base, marker string, header map[string]string) stack.Seen {
	t.Helper()
	if a := call(t, "GET", base+marker, header); a.status != 200 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	seen, ok := st.Recorder.Last(func(s stack.Seen) bool { return s.Path == marker })
	if !ok {
		t.Fatal("backend saw nothing")
	}
	return seen
}
