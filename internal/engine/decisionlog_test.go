package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// TestDecisionLogs: sampled allows get one line with the documented fields (and
// never the token); denies are capped per reason.
func TestDecisionLogs(t *testing.T) {
	now := time.Now()
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	keys, _, err := keyset.Parse(tokentest.JWKS(key))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load([]byte("issuers: [{betterAuthURL: https://auth.example.com}]\nrules: [{name: own-tasks, paths: ['/api/{user_id}/tasks'], owner: {param: user_id, claim: uuid}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	newEngine := func(rate float64, denies int) (*engine.Engine, *bytes.Buffer) {
		var buf bytes.Buffer
		e := engine.New(engine.Config{Log: slog.New(slog.NewJSONHandler(&buf, nil)), LogAllows: rate, DenyLogsPerSecond: denies, Metrics: metrics.New(prometheus.NewRegistry())})
		snap, err := engine.NewSnapshot(p, engine.SameKeys(keys), token.Config{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		e.Swap(snap)
		return e, &buf
	}
	const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	tok := key.Sign(tokentest.Claims("https://auth.example.com", "user-1", uuid, now), nil)
	allowReq := &engine.Request{Method: "GET", Host: "API.example.com:443", Path: "/API/" + uuid + "/tasks?access_token=secret", Authorization: []string{"Bearer " + tok}, RequestID: "req-1"}

	e, buf := newEngine(1, 0)
	if d := e.Check(context.Background(), metrics.TransportGRPC, allowReq); !d.Allow {
		t.Fatalf("not allowed: %+v", d)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("allow line %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"msg": "allow", "rule": "own-tasks", "method": "GET", "path": "/API/" + uuid + "/tasks",
		"host": "api.example.com", "sub": "user-1", "request_id": "req-1", "transport": "grpc"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v", k, line[k], want)
		}
	}
	if _, ok := line["latency_ms"].(float64); !ok {
		t.Errorf("no latency_ms in %v", line)
	}
	if s := buf.String(); strings.Contains(s, tok) || strings.Contains(s, "secret") {
		t.Errorf("the allow line holds the token or the query: %s", s)
	}

	e, buf = newEngine(0, 0)
	e.Check(context.Background(), metrics.TransportGRPC, allowReq)
	if buf.Len() != 0 {
		t.Errorf("LogAllows 0 logged: %s", buf.String())
	}

	e, buf = newEngine(0, 5)
	for range 50 {
		e.Check(context.Background(), metrics.TransportGRPC, &engine.Request{Method: "GET", Host: "a", Path: "/api/" + uuid + "/tasks", Authorization: []string{"Bearer garbage"}})
	}
	if n := strings.Count(buf.String(), `"msg":"deny"`); n < 5 || n > 10 {
		t.Errorf("%d deny lines for 50 denies with a cap of 5 a second", n)
	}
}

// TestShadowCountedAndLogged: a shadow rule's would-be decision is counted every
// time, logged up to the cap with the decision actually taken, and changes
// nothing.
func TestShadowCountedAndLogged(t *testing.T) {
	now := time.Now()
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	keys, _, err := keyset.Parse(tokentest.JWKS(key))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load([]byte(`issuers: [{betterAuthURL: https://auth.example.com}]
rules:
  - {name: tasks-v2, mode: shadow, paths: ['/api/{user_id}/tasks'], owner: {param: user_id, claim: uuid}, requireVerifiedEmail: true}
  - {name: own-tasks, paths: ['/api/{user_id}/tasks'], owner: {param: user_id, claim: uuid}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	e := engine.New(engine.Config{Log: slog.New(slog.NewJSONHandler(&buf, nil)), Metrics: metrics.New(reg)})
	snap, err := engine.NewSnapshot(p, engine.SameKeys(keys), token.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(snap)
	const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	tok := key.Sign(tokentest.Claims("https://auth.example.com", "user-1", uuid, now), nil)
	const n = engine.ShadowLogsPerSecond + 15
	for range n {
		d := e.Check(context.Background(), metrics.TransportGRPC, &engine.Request{Method: "GET", Host: "a", Path: "/api/" + uuid + "/tasks", Authorization: []string{"Bearer " + tok}})
		if !d.Allow || d.Rule != "own-tasks" {
			t.Fatalf("the shadow rule changed the decision: %+v", d)
		}
	}
	if got := counterValue(t, reg, "extauthz_shadow_decisions_total", map[string]string{"rule": "tasks-v2", "would": "deny", "reason": "email_unverified"}); got != n {
		t.Errorf("shadow_decisions_total = %v, want %d", got, n)
	}
	lines := strings.Count(buf.String(), `"msg":"shadow"`)
	if lines < engine.ShadowLogsPerSecond || lines > 2*engine.ShadowLogsPerSecond {
		t.Errorf("%d shadow lines for %d shadow decisions (cap %d a second)", lines, n, engine.ShadowLogsPerSecond)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(buf.String(), "\n", 2)[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"rule": "tasks-v2", "would": "deny", "would_reason": "email_unverified", "decision": "allow", "decided_by": "own-tasks"} {
		if first[k] != want {
			t.Errorf("shadow line %s = %v, want %v", k, first[k], want)
		}
	}
	if strings.Contains(buf.String(), tok) {
		t.Error("a shadow line holds the token")
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
