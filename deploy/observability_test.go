//go:build envtest

package deploy_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"sigs.k8s.io/yaml"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tlstest"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

var metricName = regexp.MustCompile(`\bextauthz_[a-z0-9_]+`)

// promQL collects every PromQL expression of the dashboard and the rendered rules.
func promQL(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chart(), "dashboards", "extauthz.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if s, ok := v.Query.(string); ok && v.Type == "query" {
			exprs = append(exprs, s)
		}
	}
	rules := objects(t, render(t, withChartDir(valueSets["full-values"])...))["PrometheusRule"]
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules rendered", len(rules))
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Expr string
				}
			}
		}
	}
	if err := yaml.Unmarshal([]byte(rules[0]), &pr); err != nil {
		t.Fatal(err)
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// TestDashboardAndAlertsUseRealMetrics scrapes a running extauthz, exercised so that
// every metric family has samples, and checks that every metric the dashboard and
// the alert rules query is one it really exports.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	exported := scrapeExercised(t)
	exprs := promQL(t)
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("expression names no extauthz metric: %s", e)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%q is not exported by extauthz (in %s)", n, e)
			}
		}
	}
	t.Logf("%d expressions use %d metric names; extauthz exports %d", len(exprs), len(used), len(exported))
	// The dashboard covers decisions by reason, latency, JWKS age and the token cache at least.
	for _, must := range []string{"extauthz_decisions_total", "extauthz_check_duration_seconds_bucket", "extauthz_jwks_last_success_timestamp_seconds", "extauthz_token_cache_hits_total"} {
		if !used[must] {
			t.Errorf("nothing queries %s", must)
		}
	}
}

func scrapeExercised(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "extauthz")
	build := exec.Command("go", "build", "-o", bin, "./cmd/extauthz")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	jwks := tokentest.NewJWKSServer(t, tokentest.JWKS(key))
	cfg := filepath.Join(dir, "policy.yaml")
	// A revocation feed with nothing revoked, so that its metrics are exported too.
	feed := tokentest.NewJWKSServer(t, []byte(`{"cursor":"","entries":[]}`))
	secret := filepath.Join(dir, "feed-secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("issuers: [{betterAuthURL: %s, revocation: {feedURL: %s, secretFile: %s, requireSession: false}}]\nrules: [{name: tasks, paths: ['/api/{id}/tasks'], owner: {param: id, claim: uuid}}]\n", jwks.URL, feed.URL, secret)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, err := testkit.FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, admin := addrs[0], addrs[2]
	// With TLS, so that the TLS series are exported too.
	ca := tlstest.NewCA("deploy test CA")
	certFile, keyFile := ca.Server("extauthz", tlstest.SANs{IPs: []string{"127.0.0.1"}}).Write(dir, "tls")
	cmd := exec.Command(bin, "serve", "--config", cfg, "--grpc-addr", grpcAddr, "--http-addr", addrs[1], "--admin-addr", admin, "--shutdown-delay", "0s",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testkit.Eventually(t, "extauthz ready", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	other := tokentest.NewKey(jwa.EdDSA, "unknown")
	for _, tok := range []string{
		key.Sign(tokentest.Claims(jwks.URL, "u", uuid, time.Now()), nil), // allow
		"garbage", // deny
		other.Sign(tokentest.Claims(jwks.URL, "u", uuid, time.Now()), nil), // unknown kid: refetch
		other.Sign(tokentest.Claims(jwks.URL, "u", uuid, time.Now()), nil), // ...then suppressed
	} {
		_, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{
			Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Path: "/api/" + uuid + "/tasks", Headers: map[string]string{"authorization": "Bearer " + tok},
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A rejected policy update, for the reload counter's "rejected" series.
	if err := os.WriteFile(cfg, []byte("issuers: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the rejected update counted", 5*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `result="rejected"`)
	})

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "extauthz_") {
			names[metricName.FindString(line)] = true
		}
	}
	for _, series := range []string{`result="rejected"`, `extauthz_jwks_refetch_suppressed_total`} {
		if !strings.Contains(string(body), series) {
			t.Fatalf("the exercise did not produce %s", series)
		}
	}
	keys := make([]string, 0, len(names))
	for n := range names {
		keys = append(keys, n)
	}
	slices.Sort(keys)
	t.Logf("exported: %v", keys)
	return names
}
