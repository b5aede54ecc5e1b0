package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/server"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const doc = `
issuers: [{betterAuthURL: https://auth.example.com}]
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerLifecycle(t *testing.T) {
	now := time.Now()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	e, key := enginetest.New(t, doc, now, m, nil)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv, err := server.New(server.Config{
		Engine: e, Metrics: m, Gatherer: reg, Log: log,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		ShutdownDelay: 300 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr, adminAddr := srv.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	testkit.Eventually(t, "ready", 5*time.Second, func() bool { c, _ := get(t, "http://"+adminAddr+"/readyz"); return c == 200 })
	if c, _ := get(t, "http://"+adminAddr+"/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testkit.Eventually(t, "gRPC health SERVING", 5*time.Second, func() bool {
		h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	tok := key.Sign(tokentest.Claims("https://auth.example.com", "u", uuid, now), nil)
	checkBothDoors(t, conn, httpAddr, tok)
	checkMetrics(t, adminAddr, tok)

	// Shutdown: readiness goes false first, while the servers still answer.
	cancel()
	testkit.Eventually(t, "not ready while draining", 5*time.Second, func() bool { c, _ := get(t, "http://"+adminAddr+"/readyz"); return c == 503 })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop")
	}
}

const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"

// checkBothDoors: the gRPC door allows the token; the HTTP door denies a request
// without one.
func checkBothDoors(t *testing.T, conn *grpc.ClientConn, httpAddr, tok string) {
	t.Helper()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/api/" + uuid + "/tasks", Headers: map[string]string{"authorization": "Bearer " + tok},
		}}},
	})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("grpc check: %v %v", resp, err)
	}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/envoy/api/"+uuid+"/tasks", nil)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 401 {
		t.Fatalf("http check without token: %d", hr.StatusCode)
	}
}

// checkMetrics: both decisions are counted by transport, without the user or token.
func checkMetrics(t *testing.T, adminAddr, tok string) {
	t.Helper()
	_, body := get(t, "http://"+adminAddr+"/metrics")
	for _, want := range []string{
		`extauthz_decisions_total{decision="allow",reason="",rule="own-tasks"} 1`,
		`extauthz_decisions_total{decision="deny",reason="token_missing",rule="own-tasks"} 1`,
		`extauthz_check_duration_seconds_count{transport="grpc"} 1`,
		`extauthz_check_duration_seconds_count{transport="http"} 1`,
		`extauthz_ready 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, uuid) || strings.Contains(body, tok[:20]) {
		t.Error("metrics contain a user id or token")
	}
}

// TestDebugPolicy: the admin port shows the policy in force (hash, issuers,
// rules, fragments) and nothing secret.
func TestDebugPolicy(t *testing.T) {
	e := engine.New(engine.Config{})
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	p, err := policy.Compose([]byte(`issuers: [{betterAuthURL: "https://auth.example.com", jwksURL: "https://auth.example.com/jwks?key=s3cret"}]
rules: [{name: health, paths: [/healthz], public: true}, {name: next, mode: shadow, paths: [/x]}]
fragments: {shop: [shop.example.com]}
`), []policy.Fragment{
		{ID: "shop/policy", Doc: []byte("hosts: [shop.example.com]\nissuers: [{betterAuthURL: https://auth.shop.example.com}]\nrules: [{name: r, paths: [/a]}]\n")},
		{ID: "shop/later", Created: time.Unix(1, 0), Doc: []byte("hosts: [shop.example.com]\nrules: [{name: r, paths: [/a]}]\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Engine: e, Log: log, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, admin := srv.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, "admin up", 5*time.Second, func() bool { c, _ := get(t, "http://"+admin+"/debug/policy"); return c == 503 })

	snap, err := engine.NewSnapshot(p, engine.SameKeys(keyset.Static{}), token.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(snap)
	code, body := get(t, "http://"+admin+"/debug/policy")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var got struct {
		Hash    string
		Issuers []struct {
			Issuer, Fragment string
			Hosts            []string
		}
		Rules []struct {
			Name   string
			Shadow bool
		}
		Fragments []policy.FragmentStatus
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Hash != p.Hash || len(got.Issuers) != 2 || got.Issuers[1].Fragment != "shop/policy" || got.Issuers[1].Hosts[0] != "shop.example.com" ||
		len(got.Rules) != 3 || !got.Rules[1].Shadow || got.Rules[2].Name != "shop/policy/r" {
		t.Fatalf("debug/policy: %s", body)
	}
	if len(got.Fragments) != 2 || !got.Fragments[0].Applied || got.Fragments[1].Applied || !strings.Contains(got.Fragments[1].Error, "already owned") {
		t.Fatalf("fragments: %+v", got.Fragments)
	}
	if strings.Contains(body, "s3cret") || strings.Contains(body, "jwks") {
		t.Fatalf("debug/policy shows the JWKS URL: %s", body)
	}
}
