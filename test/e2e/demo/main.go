// Command demo starts the whole chain on this machine — Better Auth, extauthz, Envoy,
// nginx and the FastAPI tasks backend — signs up two users and prints what happens to
// a few requests. `make demo` runs it with the tools installed.
//
// It then keeps the stack running until Ctrl-C, or stops at once with -stop.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

func main() {
	stop := flag.Bool("stop", false, "stop the stack after the transcript instead of leaving it running")
	flag.Parse()
	if err := run(*stop); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(stop bool) error {
	tools, err := stack.ToolsFromEnv()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "extauthz-demo-")
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Println("Starting Better Auth, the FastAPI backend, extauthz, Envoy and nginx on 127.0.0.1 ...")
	s, err := stack.Up(tools, dir, false)
	if err != nil {
		return err
	}
	defer s.Down()
	alice, err := s.BetterAuth.SignUp("Alice")
	if err != nil {
		return err
	}
	bob, err := s.BetterAuth.SignUp("Bob")
	if err != nil {
		return err
	}
	tok, err := alice.Token()
	if err != nil {
		return err
	}
	fmt.Printf("Up in %s.\n\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  Better Auth  %s\n  Envoy        %s   (ext_authz gRPC -> extauthz %s)\n  nginx        %s   (auth_request -> extauthz %s/nginx)\n  extauthz     http://%s/metrics\n\n",
		s.BetterAuth.URL, s.Envoy.URL, s.Extauthz.GRPC, s.Nginx.URL, s.Extauthz.HTTP, s.Extauthz.Admin)
	fmt.Printf("Signed up Alice (uuid %s) and Bob (uuid %s); Alice's JWT comes from GET /api/auth/token.\n\n", alice.UUID, bob.UUID)

	steps := []struct {
		what, method, path string
		header             map[string]string
	}{
		{"Alice lists her tasks", "GET", "/api/" + alice.UUID + "/tasks", map[string]string{"Authorization": "Bearer " + tok}},
		{"...with her uuid in upper case (compared as UUIDs)", "GET", "/api/" + strings.ToUpper(alice.UUID) + "/tasks", map[string]string{"Authorization": "Bearer " + tok}},
		{"Alice asks for Bob's tasks", "GET", "/api/" + bob.UUID + "/tasks", map[string]string{"Authorization": "Bearer " + tok}},
		{"No token", "GET", "/api/" + alice.UUID + "/tasks", nil},
		{"A garbage token", "GET", "/api/" + alice.UUID + "/tasks", map[string]string{"Authorization": "Bearer not.a.jwt"}},
		{"Alice forges x-user-uuid: <Bob>", "GET", "/api/" + alice.UUID + "/tasks", map[string]string{"Authorization": "Bearer " + tok, "X-User-Uuid": bob.UUID}},
		{"CORS preflight, no token", "OPTIONS", "/api/" + alice.UUID + "/tasks", map[string]string{"Origin": "http://localhost:3000", "Access-Control-Request-Method": "DELETE"}},
		{"Public health check", "GET", "/healthz", nil},
	}
	for _, st := range steps {
		req, _ := http.NewRequest(st.method, s.Envoy.URL+st.path, nil)
		for k, v := range st.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		fmt.Printf("• %s\n  %s %s\n  → %s  %s\n", st.what, st.method, short(st.path), resp.Status, oneLine(body))
		if c := resp.Header.Get("Www-Authenticate"); c != "" {
			fmt.Printf("    WWW-Authenticate: %s\n", c)
		}
	}
	fmt.Println("\nWhy each deny happened is in extauthz's log (reason codes), never in the response:")
	for _, line := range strings.Split(s.Extauthz.Proc.Logs(), "\n") {
		if strings.Contains(line, `"msg":"deny"`) {
			fmt.Println("  " + line)
		}
	}
	if err := signOutDemo(tools, dir, s.Recorder.Addr); err != nil {
		return err
	}
	fmt.Printf("\nTry it yourself:\n  curl -i -H 'Authorization: Bearer %s' %s/api/%s/tasks\n", tok, s.Envoy.URL, alice.UUID)
	fmt.Printf("Logs of every process: %s\n", dir)
	if stop {
		return nil
	}
	fmt.Println("\nThe stack keeps running. Ctrl-C stops it.")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println("stopping")
	return nil
}

func short(p string) string {
	if len(p) > 70 {
		return p[:70] + "…"
	}
	return p
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// signOutDemo runs the PostgreSQL example with the extauthz plugin, signs Alice in,
// signs her out, and shows her still-unexpired JWT refused within about a second.
func signOutDemo(tools stack.Tools, dir, backend string) error {
	fmt.Println("\nSign-out through the revocation feed (the PostgreSQL example with the extauthz plugin):")
	pg, err := stack.StartPostgres(tools, dir)
	if err != nil {
		return err
	}
	defer pg.Proc.Stop()
	ba, err := stack.StartExampleBetterAuth(tools, dir, pg)
	if err != nil {
		return err
	}
	defer ba.Proc.Stop()
	c, err := stack.StartChain(tools, dir, "signout", stack.RevocationPolicy(ba.URL, "{ secretFile: "+ba.FeedSecretFile+" }"), backend)
	if err != nil {
		return err
	}
	defer c.Stop()
	alice, err := ba.SignUp("Alice")
	if err != nil {
		return err
	}
	tok, err := alice.Token()
	if err != nil {
		return err
	}
	status := func() (int, error) {
		req, _ := http.NewRequest("GET", c.Envoy.URL+"/api/"+alice.UUID+"/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	before, err := status()
	if err != nil {
		return err
	}
	fmt.Printf("• Alice's JWT (valid 15 minutes): GET her tasks → %d\n", before)
	if _, err := alice.Post("/api/auth/sign-out", map[string]any{}); err != nil {
		return err
	}
	start := time.Now()
	fmt.Println("• Alice signs out (POST /api/auth/sign-out); the same JWT, again and again:")
	for time.Since(start) < 5*time.Second {
		st, err := status()
		if err != nil {
			return err
		}
		if st != before {
			fmt.Printf("  → %d after %s (reason session_revoked in extauthz's log)\n", st, time.Since(start).Round(time.Millisecond))
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the signed-out JWT was still allowed after 5s")
}
