package authz_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// TestChecksContinueTheProxysTrace: the check span is a child of the span the
// proxy names, in W3C or B3 headers, or in the gRPC call's metadata (Envoy's own
// ext_authz span, preferred); it carries the outcome and never a token; deny
// lines carry the trace id.
func TestChecksContinueTheProxysTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracing.Install(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	now := time.Now()
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	keys, _, _ := keyset.Parse(tokentest.JWKS(key))
	p, err := policy.Load([]byte("issuers: [{betterAuthURL: https://auth.example.com}]\nrules: [{name: own-tasks, paths: ['/api/{user_id}/tasks'], owner: {param: user_id, claim: uuid}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	e := engine.New(engine.Config{Metrics: metrics.New(prometheus.NewRegistry()), Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	snap, err := engine.NewSnapshot(p, engine.SameKeys(keys), token.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(snap)
	g, err := authz.NewGRPC(authz.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := authz.NewHTTP(authz.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	tok := key.Sign(tokentest.Claims("https://auth.example.com", "u", uuid, now), nil)
	const (
		traceW3C = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanW3C  = "00f067aa0ba902b7"
		traceB3  = "463ac35c9f6413ad48485a3953bb6124"
		spanB3   = "a2fb4a1d1a96d312"
		traceMD  = "0af7651916cd43dd8448eb211c80319c"
		spanMD   = "b7ad6b7169203331"
	)
	check := func(ctx context.Context, headers map[string]string) {
		headers["authorization"] = "Bearer " + tok
		_, err := g.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: "/api/" + uuid + "/tasks", Headers: headers}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	tracing.TrustRequestHeaders = true
	check(context.Background(), map[string]string{"traceparent": "00-" + traceW3C + "-" + spanW3C + "-01"})
	check(context.Background(), map[string]string{"x-b3-traceid": traceB3, "x-b3-spanid": spanB3, "x-b3-sampled": "1"})
	md := metadata.Pairs("traceparent", "00-"+traceMD+"-"+spanMD+"-01")
	check(metadata.NewIncomingContext(context.Background(), md), map[string]string{"traceparent": "00-" + traceW3C + "-" + spanW3C + "-01"})
	// HTTP dialect, and a deny.
	r := httptest.NewRequest("GET", "/envoy/api/"+uuid+"/tasks", nil)
	r.Header.Set("Traceparent", "00-"+traceW3C+"-"+spanW3C+"-01")
	r.Header.Set("Authorization", "Bearer garbage")
	h.ServeHTTP(httptest.NewRecorder(), r)
	// Untrusted (the default): the client's traceparent is only a link of a new
	// root, so a client cannot choose the trace id or force sampling.
	tracing.TrustRequestHeaders = false
	defer func() { tracing.TrustRequestHeaders = false }()
	check(context.Background(), map[string]string{"traceparent": "00-" + traceW3C + "-" + spanW3C + "-01"})

	spans := rec.Ended()
	var checks []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "extauthz.check" {
			checks = append(checks, s)
		}
	}
	if len(checks) != 5 {
		t.Fatalf("%d check spans, want 5", len(checks))
	}
	if u := checks[4]; u.SpanContext().TraceID().String() == traceW3C || u.Parent().IsValid() ||
		len(u.Links()) != 1 || u.Links()[0].SpanContext.TraceID().String() != traceW3C {
		t.Errorf("an untrusted traceparent: trace %s parent %v links %v, want a new root linked to it", u.SpanContext().TraceID(), u.Parent(), u.Links())
	}
	checks = checks[:4]
	for i, want := range []struct{ trace, parent, decision string }{
		{traceW3C, spanW3C, "allow"}, {traceB3, spanB3, "allow"}, {traceMD, spanMD, "allow"}, {traceW3C, spanW3C, "deny"},
	} {
		s := checks[i]
		if s.SpanContext().TraceID().String() != want.trace || s.Parent().SpanID().String() != want.parent {
			t.Errorf("span %d: trace %s parent %s, want %s %s", i, s.SpanContext().TraceID(), s.Parent().SpanID(), want.trace, want.parent)
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
			if strings.Contains(a.Value.String(), tok) || strings.Contains(a.Value.String(), uuid) {
				t.Errorf("span %d attribute %s holds a token or claim value", i, a.Key)
			}
		}
		if attrs["extauthz.decision"] != want.decision || attrs["extauthz.rule"] != "own-tasks" {
			t.Errorf("span %d attributes %v", i, attrs)
		}
	}
	if !strings.Contains(logs.String(), `"trace_id":"`+traceW3C+`"`) {
		t.Errorf("the deny line has no trace id: %s", logs.String())
	}
}
