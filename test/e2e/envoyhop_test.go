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
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// BenchmarkEnvoyHop measures what the ext_authz hop adds to a request through a real
// Envoy: the shipped examples/envoy/envoy.yaml in front of a trivial backend, against
// the same file with the ext_authz filter taken out. Both get Alice's warm token.
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
	tok, err := userA.Token()
	if err != nil {
		b.Fatal(err)
	}
	url := "/api/" + userA.UUID + "/tasks"
	for _, v := range []struct {
		name string
		base string
	}{{"without-ext_authz", without.URL}, {"with-ext_authz", with.URL}} {
		b.Run(v.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
			req, _ := http.NewRequest("GET", v.base+url, nil)
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
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
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
