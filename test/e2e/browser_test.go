//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// The app's pages. sign-in signs up with Better Auth and goes back to where the
// redirect came from; app reads the session and lists the user's tasks with
// fetch(): cookies only, no token code.
const signInPage = `<!doctype html><title>Sign in</title><h1>Sign in</h1>
<input id=email placeholder=email> <input id=password type=password placeholder=password>
<button id=sign-up>Sign up</button><p id=msg></p>
<script>
document.querySelector("#sign-up").onclick = async () => {
  const r = await fetch("/api/auth/sign-up/email", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: email.value, password: password.value, name: "Browser" }) });
  if (!r.ok) { msg.textContent = "sign-up: " + r.status; return; }
  location = new URLSearchParams(location.search).get("callbackURL") || "/app";
};
</script>`

const appPage = `<!doctype html><title>Tasks</title><h1>My tasks</h1><pre id=tasks></pre><p id=others></p>
<script>
(async () => {
  const s = await (await fetch("/api/auth/get-session")).json();
  const r = await fetch("/api/" + s.user.uuid + "/tasks");
  const t = document.querySelector("#tasks");
  t.textContent = "GET /api/" + s.user.uuid + "/tasks: " + r.status + "\n" + await r.text();
  t.dataset.uuid = s.user.uuid;
  t.dataset.status = r.status;
})();
</script>`

// TestBrowser runs Debian's chromium, headless, against the real Better Auth (its
// signed session cookie cache) behind the real Envoy with the shipped config, all
// on one origin: a protected page redirects to sign-in; the user signs up and the
// page lists their tasks with fetch(), cookies only; another user's tasks are
// forbidden; a form on another origin posting with the user's cookies is refused;
// after sign-out the page can no longer read the tasks. Screenshots of each step
// are saved in the test's log directory.
func TestBrowser(t *testing.T) {
	dir := t.TempDir()
	port := stack.FreePort()
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", port)
	ba := betterAuth(t, "browser-better-auth", stack.BetterAuthOptions{Sessions: true, BaseURL: appOrigin})

	// The app server behind Envoy: its pages, Better Auth under /api/auth, the
	// backend under /api.
	baURL, _ := url.Parse(ba.URL)
	backendURL, _ := url.Parse("http://" + st.Recorder.Addr)
	toBA, toBackend := httputil.NewSingleHostReverseProxy(baURL), httputil.NewSingleHostReverseProxy(backendURL)
	app := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/auth/"):
			toBA.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			toBackend.ServeHTTP(w, r)
		case r.URL.Path == "/sign-in":
			_, _ = w.Write([]byte(signInPage))
		case r.URL.Path == "/app":
			_, _ = w.Write([]byte(appPage))
		default:
			http.NotFound(w, r)
		}
	}))
	evil := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method=POST action=%q><input name=title value=pwned></form><script>document.forms[0].submit()</script>`, r.URL.Query().Get("target"))
	}))

	policy := fmt.Sprintf(`issuers:
  - issuer: %[1]s
    audiences: [%[1]s]
    jwksURL: %[2]s/api/auth/jwks
    credentials: [jwt, sessionCookie]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-session-id: sid }
rules:
  - { name: better-auth, paths: ["/api/auth/**"], public: true }
  - { name: sign-in, paths: ["/sign-in"], public: true }
  - { name: app, paths: ["/app"], onUnauthenticated: redirect, signInURL: /sign-in }
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
default: deny
`, appOrigin, ba.URL)
	ext, err := stack.StartExtauthz(tools, dir, "browser-extauthz", policy, stack.ExtauthzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Proc.Stop)
	env, err := stack.StartEnvoyOn(tools, dir, "browser-envoy", port, ext.GRPC, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Proc.Stop)

	shots := filepath.Join(workDir, "browser")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	posts := func() int {
		return st.Recorder.Count(func(s stack.Seen) bool { return s.Method == "POST" && strings.HasSuffix(s.Path, "/tasks") })
	}
	before := posts()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := stack.Run(ctx, tools.BrowserDir, []string{"CHROMIUM=" + tools.Chromium, "APP=" + appOrigin, "EVIL=http://" + evil,
		"SHOTS=" + shots, "BOB_UUID=" + userB.UUID}, tools.Node, filepath.Join(tools.BrowserDir, "run.mjs"))
	if err != nil {
		t.Fatalf("browser: %v\n%s", err, ext.Proc.Logs())
	}
	var got struct {
		RedirectedTo  string `json:"redirectedTo"`
		OwnTasks      int    `json:"ownTasks"`
		UUID          string `json:"uuid"`
		OthersTasks   int    `json:"othersTasks"`
		CrossSiteBody string `json:"crossSiteBody"`
		AfterSignOut  int    `json:"afterSignOut"`
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("browser output %q: %v", out, err)
	}
	t.Logf("browser: %+v; screenshots in %s", got, shots)
	if got.RedirectedTo != "/sign-in?callbackURL=%2Fapp" {
		t.Errorf("protected page without a session went to %q", got.RedirectedTo)
	}
	if got.OwnTasks != 200 || got.UUID == "" {
		t.Errorf("own tasks: %d (uuid %q)", got.OwnTasks, got.UUID)
	}
	if got.OthersTasks != 403 {
		t.Errorf("Bob's tasks: %d", got.OthersTasks)
	}
	if posts() != before || !strings.Contains(got.CrossSiteBody, "forbidden") {
		t.Errorf("cross-site POST reached the backend (%d -> %d) or was not refused: %q", before, posts(), got.CrossSiteBody)
	}
	if got.AfterSignOut != 401 {
		t.Errorf("after sign-out: %d", got.AfterSignOut)
	}
	for _, reason := range []string{"owner_mismatch", "csrf_origin_mismatch"} {
		if n, _ := ext.Metric("extauthz_decisions_total", `reason="`+reason+`"`); n < 1 {
			t.Errorf("no %s decision", reason)
		}
	}
}

// serve runs h on a loopback port until the test ends and returns its address
// (host:port).
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}
