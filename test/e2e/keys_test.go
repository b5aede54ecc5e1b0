//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// chain starts an extauthz with policyDoc and an Envoy in front of the shared backend,
// both stopped when the test ends.
func chain(t *testing.T, policyDoc string) (*stack.Extauthz, *stack.Envoy) {
	t.Helper()
	dir := t.TempDir()
	ext, err := stack.StartExtauthz(tools, dir, "extauthz", policyDoc, stack.ExtauthzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Proc.Stop)
	env, err := stack.StartEnvoy(tools, dir, "envoy", ext.GRPC, st.Recorder.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Proc.Stop)
	return ext, env
}

func betterAuth(t *testing.T, name string, o stack.BetterAuthOptions) *stack.BetterAuth {
	t.Helper()
	ba, err := stack.StartBetterAuth(tools, t.TempDir(), name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ba.Proc.Stop)
	return ba
}

func header(t *testing.T, tok string) map[string]string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestKeyRotation: Better Auth rotates its signing key every 3 s while a client keeps
// fetching fresh tokens and calling the API. No valid request may fail, and extauthz
// fetches the JWKS about once per new key, not once per request.
func TestKeyRotation(t *testing.T) {
	ba := betterAuth(t, "better-auth-rotating", stack.BetterAuthOptions{RotationInterval: 3, GracePeriod: 30})
	user, err := ba.SignUp("Rita")
	if err != nil {
		t.Fatal(err)
	}
	ext, env := chain(t, strings.Replace(stack.Policy(ba.URL, ""), "betterAuthURL: "+ba.URL,
		"betterAuthURL: "+ba.URL+"\n    refetchCooldown: 1s", 1))

	const runFor = 12 * time.Second
	kids := map[string]bool{}
	requests, failures := 0, 0
	var tokens []string
	for start := time.Now(); time.Since(start) < runFor && requests < 2000; {
		tok := token(t, user)
		tokens = append(tokens, tok)
		kids[header(t, tok)["kid"]] = true
		// Use the new token and, as a browser would for a while, an older one.
		for _, tk := range []string{tok, tokens[len(tokens)/2]} {
			requests++
			if a := call(t, "GET", env.URL+tasksPath(user.UUID), bearer(tk)); a.status != 200 {
				failures++
				t.Errorf("request %d with kid %s: %d", requests, header(t, tk)["kid"], a.status)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fetches, err := ext.Metric("extauthz_jwks_refresh_total", `result="success"`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotation: %d requests over %s, %d failed, %d signing keys seen, %v JWKS fetches", requests, runFor, failures, len(kids), fetches)
	if len(kids) < 3 {
		t.Fatalf("only %d keys seen: Better Auth did not rotate, the test proves nothing", len(kids))
	}
	if fetches > float64(len(kids)+2) {
		t.Errorf("%v JWKS fetches for %d keys: refetching too often", fetches, len(kids))
	}
}

// TestJWKSOutage: Better Auth stops; tokens signed by a key extauthz already has keep
// passing while every background refresh fails.
func TestJWKSOutage(t *testing.T) {
	ba := betterAuth(t, "better-auth-outage", stack.BetterAuthOptions{})
	user, err := ba.SignUp("Olga")
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, user)
	ext, env := chain(t, strings.Replace(stack.Policy(ba.URL, ""), "betterAuthURL: "+ba.URL,
		"betterAuthURL: "+ba.URL+"\n    refreshInterval: 500ms", 1))
	if a := call(t, "GET", env.URL+tasksPath(user.UUID), bearer(tok)); a.status != 200 {
		t.Fatalf("before the outage: %d", a.status)
	}
	ba.Proc.Stop()

	const outage = 10 * time.Second
	n := 0
	for start := time.Now(); time.Since(start) < outage; n++ {
		if a := call(t, "GET", env.URL+tasksPath(user.UUID), bearer(tok)); a.status != 200 {
			t.Fatalf("after %s of outage: %d", time.Since(start).Round(time.Millisecond), a.status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	failed, _ := ext.Metric("extauthz_jwks_refresh_total", `result="error"`)
	t.Logf("outage: %d requests over %s passed with the cached key; %v JWKS refreshes failed meanwhile", n, outage, failed)
	if failed < 5 {
		t.Fatalf("only %v failed refreshes: the outage was not exercised", failed)
	}
	// Readiness holds: cached keys are still usable.
	if err := stack.WaitHTTP(nil, "http://"+ext.Admin+"/readyz", 200, time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestAllAlgorithms: one Better Auth per algorithm, one extauthz trusting all five,
// and a request through Envoy with each one's token.
func TestAllAlgorithms(t *testing.T) {
	algs := []string{"EdDSA", "ES256", "ES512", "RS256", "PS256"}
	bas := make([]*stack.BetterAuth, len(algs))
	errs := make([]error, len(algs))
	var wg sync.WaitGroup
	for i, alg := range algs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bas[i], errs[i] = stack.StartBetterAuth(tools, t.TempDir(), "better-auth-"+alg, stack.BetterAuthOptions{Alg: alg})
		}()
	}
	wg.Wait()
	for i := range algs {
		if bas[i] != nil {
			t.Cleanup(bas[i].Proc.Stop)
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	// The shared policy's rules, with all five issuers.
	rules := strings.SplitN(stack.Policy("x", ""), "identity:", 2)[1]
	_, env := chain(t, issuersBlock(bas)+"identity:"+rules)
	for i, ba := range bas {
		user, err := ba.SignUp("Al")
		if err != nil {
			t.Fatal(err)
		}
		tok := token(t, user)
		if got := header(t, tok)["alg"]; got != algs[i] {
			t.Fatalf("Better Auth signed with %s, want %s", got, algs[i])
		}
		if a := call(t, "GET", env.URL+tasksPath(user.UUID), bearer(tok)); a.status != 200 {
			t.Errorf("%s: %d", algs[i], a.status)
		}
	}
}

func issuersBlock(bas []*stack.BetterAuth) string {
	s := "issuers:\n"
	for _, ba := range bas {
		s += fmt.Sprintf("  - betterAuthURL: %s\n", ba.URL)
	}
	return s
}
