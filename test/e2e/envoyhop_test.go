//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// BenchmarkEnvoyHop measures what the ext_authz hop adds to a request through a real
// Envoy: the shipped examples/envoy/envoy.yaml (gRPC), envoy-mtls.yaml (gRPC over
// mutual TLS) and envoy-http.yaml (HTTP mode) in front of a trivial backend,
// against the same file with the ext_authz filter taken out; Envoy's own
// jwt_authn filter verifying the same token in its place (what an Istio
// RequestAuthentication costs), without and with its JWT cache; and Caddy's
// shipped forward_auth Caddyfile against the same Caddyfile without
// forward_auth. All get Alice's warm token.
//
//	make bench-envoy
func BenchmarkEnvoyHop(b *testing.B) {
	backend := fastBackend(b)
	dir := b.TempDir()
	with, err := stack.StartEnvoy(tools, dir, "envoy-with", st.Extauthz.GRPC, backend)
	if err != nil {
		b.Fatal(err)
	}
	defer with.Proc.Stop()
	without, err := startEnvoyWithoutExtAuthz(dir, backend)
	if err != nil {
		b.Fatal(err)
	}
	defer without.Proc.Stop()
	withHTTP, err := stack.StartEnvoyHTTP(tools, dir, "envoy-http-with", st.Extauthz.HTTP, backend)
	if err != nil {
		b.Fatal(err)
	}
	defer withHTTP.Proc.Stop()
	caddy, err := stack.StartCaddy(tools, dir, "caddy-with", st.Extauthz.HTTP, backend)
	if err != nil {
		b.Fatal(err)
	}
	defer caddy.Proc.Stop()
	caddyWithout, err := startCaddyWithoutForwardAuth(dir, backend)
	if err != nil {
		b.Fatal(err)
	}
	defer caddyWithout.Proc.Stop()
	mtls := startMTLS(b, dir, backend)
	jwtAuthn, err := startEnvoyJWTAuthn(dir, "envoy-jwt_authn", backend, false)
	if err != nil {
		b.Fatal(err)
	}
	defer jwtAuthn.Proc.Stop()
	jwtAuthnCached, err := startEnvoyJWTAuthn(dir, "envoy-jwt_authn-cached", backend, true)
	if err != nil {
		b.Fatal(err)
	}
	defer jwtAuthnCached.Proc.Stop()
	tok, err := userA.Token()
	if err != nil {
		b.Fatal(err)
	}
	url := "/api/" + userA.UUID + "/tasks"
	// Each variant's baseline is the same proxy without the authorization step.
	variants := []struct{ name, base, baseline string }{
		{"without-ext_authz", without.URL, ""}, {"with-ext_authz", with.URL, "without-ext_authz"},
		{"with-ext_authz-mtls", mtls.envoy.URL, "without-ext_authz"}, {"with-ext_authz-http", withHTTP.URL, "without-ext_authz"},
		{"jwt_authn", jwtAuthn.URL, "without-ext_authz"}, {"jwt_authn-cached", jwtAuthnCached.URL, "without-ext_authz"},
		{"caddy-without-forward_auth", caddyWithout.URL, ""}, {"caddy-with-forward_auth", caddy.URL, "caddy-without-forward_auth"},
	}
	for _, v := range variants {
		if v.baseline != "" {
			// The filter under test is there: a request without a token is refused.
			resp, err := http.Get(v.base + url)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 && resp.StatusCode != 403 {
				b.Fatalf("%s: no token, status %d", v.name, resp.StatusCode)
			}
		}
	}
	// The variants alternate within each round, so that a noisy neighbour hurts all
	// of them alike; the summary takes medians over the rounds.
	p50s, p99s := map[string][]float64{}, map[string][]float64{}
	for range hopRounds {
		for _, v := range variants {
			b.Run(v.name, func(b *testing.B) {
				p50, p99 := hop(b, v.base+url, tok)
				b.ReportMetric(p50, "p50-µs")
				b.ReportMetric(p99, "p99-µs")
				p50s[v.name], p99s[v.name] = append(p50s[v.name], p50), append(p99s[v.name], p99)
			})
		}
	}
	fmt.Printf("\n| medians of %d rounds, sequential requests | p50 µs | p99 µs | p50 added |\n|---|---|---|---|\n", hopRounds)
	for _, v := range variants {
		added := ""
		if v.baseline != "" {
			added = fmt.Sprintf("%+.0f µs", medianOf(p50s[v.name])-medianOf(p50s[v.baseline]))
		}
		fmt.Printf("| %s | %.0f | %.0f | %s |\n", v.name, medianOf(p50s[v.name]), medianOf(p99s[v.name]), added)
	}
}

// hopRounds is how many times each variant runs, alternating.
const hopRounds = 5

// hop sends b.N sequential requests to url with the token and returns the p50
// and p99 latency in µs.
func hop(b *testing.B, url, tok string) (p50, p99 float64) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(lat[len(lat)/2].Microseconds()), float64(lat[len(lat)*99/100].Microseconds())
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// fastBackend answers 200 at once, so that the proxy path is what is measured.
func fastBackend(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// startEnvoyWithoutExtAuthz runs the shipped example with its ext_authz filter removed.
func startEnvoyWithoutExtAuthz(dir, backend string) (*stack.Envoy, error) {
	raw, err := os.ReadFile(filepath.Join(tools.ExampleDir, "envoy", "envoy.yaml"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	hcm := cfg["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	var kept []any
	for _, f := range hcm["http_filters"].([]any) {
		if f.(map[string]any)["name"] != "envoy.filters.http.ext_authz" {
			kept = append(kept, f)
		}
	}
	if len(kept) != 1 {
		return nil, fmt.Errorf("expected only the router filter to remain, got %v", kept)
	}
	hcm["http_filters"] = kept
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	exdir := filepath.Join(dir, "examples-without")
	if err := os.MkdirAll(filepath.Join(exdir, "envoy"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(exdir, "envoy", "envoy.yaml"), out, 0o600); err != nil {
		return nil, err
	}
	t := tools
	t.ExampleDir = exdir
	return stack.StartEnvoy(t, dir, "envoy-without", "127.0.0.1:9", backend)
}

// startEnvoyJWTAuthn runs the shipped example with Envoy's jwt_authn filter in
// place of ext_authz, configured as an Istio RequestAuthentication for Better
// Auth would be: issuer and audience, the JWKS (inline, so that no fetch is
// timed), the token required on every path, and the identity claims copied to
// headers as extauthz's policy does. cached adds jwt_authn's JWT cache, which
// Istio does not configure.
func startEnvoyJWTAuthn(dir, name, backend string, cached bool) (*stack.Envoy, error) {
	resp, err := http.Get(st.BetterAuth.URL + "/api/auth/jwks")
	if err != nil {
		return nil, err
	}
	jwks, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("jwks: %d %v", resp.StatusCode, err)
	}
	provider := map[string]any{
		"issuer": st.BetterAuth.URL, "audiences": []any{st.BetterAuth.URL},
		"local_jwks": map[string]any{"inline_string": string(jwks)},
		"forward":    true,
		"claim_to_headers": []any{
			map[string]any{"header_name": "x-user-id", "claim_name": "sub"},
			map[string]any{"header_name": "x-user-uuid", "claim_name": "uuid"},
			map[string]any{"header_name": "x-user-email", "claim_name": "email"},
		},
	}
	if cached {
		provider["jwt_cache_config"] = map[string]any{"jwt_cache_size": 1000}
	}
	filter := map[string]any{"name": "envoy.filters.http.jwt_authn", "typed_config": map[string]any{
		"@type":     "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
		"providers": map[string]any{"better_auth": provider},
		"rules":     []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": map[string]any{"provider_name": "better_auth"}}},
	}}
	return stack.StartEnvoyExample(tools, dir, name, stack.EnvoyExample{Backend: backend, ExtauthzGRPC: "127.0.0.1:9", Edit: func(cfg map[string]any) error {
		hcm := cfg["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
		filters := hcm["http_filters"].([]any)
		for i, f := range filters {
			if f.(map[string]any)["name"] == "envoy.filters.http.ext_authz" {
				filters[i] = filter
				return nil
			}
		}
		return fmt.Errorf("no ext_authz filter to replace")
	}})
}

// startCaddyWithoutForwardAuth runs the shipped Caddyfile with its forward_auth
// block removed.
func startCaddyWithoutForwardAuth(dir, backend string) (*stack.Caddy, error) {
	raw, err := os.ReadFile(filepath.Join(tools.ExampleDir, "caddy", "Caddyfile"))
	if err != nil {
		return nil, err
	}
	src := string(raw)
	start := strings.Index(src, "\tforward_auth ")
	end := strings.Index(src[max(start, 0):], "\n\t}\n")
	if start < 0 || end < 0 {
		return nil, fmt.Errorf("no forward_auth block in the Caddyfile")
	}
	exdir := filepath.Join(dir, "examples-caddy-without")
	if err := os.MkdirAll(filepath.Join(exdir, "caddy"), 0o755); err != nil {
		return nil, err
	}
	// Keep a forward_auth line for StartCaddy to move, inside a comment.
	out := src[:start] + "\t# forward_auth 127.0.0.1:9002 {\n" + src[start+end+len("\n\t}\n"):]
	if err := os.WriteFile(filepath.Join(exdir, "caddy", "Caddyfile"), []byte(out), 0o600); err != nil {
		return nil, err
	}
	t := tools
	t.ExampleDir = exdir
	return stack.StartCaddy(t, dir, "caddy-without", "127.0.0.1:9", backend)
}
