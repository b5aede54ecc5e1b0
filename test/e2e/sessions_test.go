//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// TestBrowserSessionsThroughEnvoy uses a real Better Auth with the bearer plugin and
// the jwt plugin's signed session cookie cache: its session cookies (offline), its
// session_token alone (online, through get-session) and its bearer-plugin token
// reach the user's tasks through the real Envoy with no JWT; another user's tasks
// stay forbidden; a cross-site cookie POST is refused.
func TestBrowserSessionsThroughEnvoy(t *testing.T) {
	ba := betterAuth(t, "sessions-better-auth", stack.BetterAuthOptions{Sessions: true})
	policy := fmt.Sprintf(`issuers:
  - betterAuthURL: %s
    credentials: [jwt, sessionCookie, bearerSession]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-session-id: sid }
rules:
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
default: deny
`, ba.URL)
	ext, env := chain(t, policy)
	alice, err := ba.SignUp("Alice")
	if err != nil {
		t.Fatalf("%v\n%s", err, ba.Proc.Logs())
	}
	bob, err := ba.SignUp("Bob")
	if err != nil {
		t.Fatal(err)
	}
	cookies, err := alice.Cookies()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cookies, "better-auth.session_data=") || !strings.Contains(cookies, "better-auth.session_token=") {
		t.Fatalf("Better Auth set no signed cookie cache: %q", cookieNames(cookies))
	}
	if strings.Count(alice.BearerToken, ".") != 1 {
		t.Fatalf("set-auth-token %q is not the bearer plugin's <token>.<signature>", alice.BearerToken)
	}
	var tokenOnly string
	for _, c := range strings.Split(cookies, "; ") {
		if strings.HasPrefix(c, "better-auth.session_token=") {
			tokenOnly = c
		}
	}
	cases := []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"session cookies (offline)", "GET", tasksPath(alice.UUID), map[string]string{"Cookie": cookies}, 200},
		{"session cookies, Bob's tasks", "GET", tasksPath(bob.UUID), map[string]string{"Cookie": cookies}, 403},
		{"session_token alone (online)", "GET", tasksPath(alice.UUID), map[string]string{"Cookie": tokenOnly}, 200},
		{"bearer-plugin token (online)", "GET", tasksPath(alice.UUID), map[string]string{"Authorization": "Bearer " + alice.BearerToken}, 200},
		{"cross-site cookie POST", "POST", tasksPath(alice.UUID), map[string]string{"Cookie": cookies, "Origin": "https://evil.example", "Content-Type": "application/json"}, 403},
		{"no credential", "GET", tasksPath(alice.UUID), nil, 401},
	}
	for _, tc := range cases {
		if a := call(t, tc.method, env.URL+tc.path, tc.header); a.status != tc.want {
			t.Errorf("%s: %d, want %d: %s\n%s", tc.name, a.status, tc.want, a.body, lastDeny(ext.Proc.Logs()))
		}
	}
	for reason, want := range map[string]float64{"owner_mismatch": 1, "csrf_origin_mismatch": 1} {
		if n, _ := ext.Metric("extauthz_decisions_total", `reason="`+reason+`"`); n < want {
			t.Errorf("%s decisions %v, want >= %v", reason, n, want)
		}
	}
	// The backend saw the identity, never the session cookies' secrets in a header of ours.
	seen, ok := st.Recorder.Last(func(s stack.Seen) bool { return s.Path == tasksPath(alice.UUID) })
	if !ok || seen.Header.Get("X-User-Uuid") != alice.UUID || seen.Header.Get("X-Auth-Method") == "" {
		t.Errorf("backend saw %v", seen.Header)
	}
}

func cookieNames(h string) []string {
	var names []string
	for _, c := range strings.Split(h, "; ") {
		n, _, _ := strings.Cut(c, "=")
		names = append(names, n)
	}
	return names
}

func lastDeny(logs string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"msg":"deny"`) {
			return lines[i]
		}
	}
	return ""
}
