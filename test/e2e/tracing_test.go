//go:build e2e

package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// TestTracesReachACollector: Envoy (the shipped example with its OpenTelemetry
// tracer switched on) and extauthz (OTEL_* variables, OTLP over HTTP) export to a
// real Jaeger v2; the extauthz.check span is in Envoy's trace, a child of Envoy's
// ext_authz call span.
func TestTracesReachACollector(t *testing.T) {
	dir := t.TempDir()
	jg, err := stack.StartJaeger(tools, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer jg.Proc.Stop()
	ext, err := stack.StartExtauthz(tools, dir, "extauthz-traced", stack.Policy(st.BetterAuth.URL, ""), stack.ExtauthzOptions{LogLevel: "info", Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + jg.OTLPHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=extauthz", "OTEL_BSP_SCHEDULE_DELAY=100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Proc.Stop()
	envoy, err := stack.StartEnvoyExample(tools, dir, "envoy-traced", stack.EnvoyExample{ExtauthzGRPC: ext.GRPC, Backend: fastBackend(t), Edit: func(cfg map[string]any) error {
		sr := cfg["static_resources"].(map[string]any)
		hcm := sr["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
		hcm["tracing"] = map[string]any{"provider": map[string]any{
			"name": "envoy.tracers.opentelemetry",
			"typed_config": map[string]any{
				"@type":        "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
				"grpc_service": map[string]any{"envoy_grpc": map[string]any{"cluster_name": "otel"}, "timeout": "1s"},
				"service_name": "envoy",
			}}}
		host, port, _ := strings.Cut(jg.OTLPGRPC, ":")
		sr["clusters"] = append(sr["clusters"].([]any), map[string]any{
			"name": "otel", "type": "STATIC", "connect_timeout": "1s",
			"typed_extension_protocol_options": map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}},
			"load_assignment": map[string]any{"cluster_name": "otel", "endpoints": []any{map[string]any{"lb_endpoints": []any{
				map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}}}}}}},
		})
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer envoy.Proc.Stop()
	tok, err := userA.Token()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		req, _ := http.NewRequest("GET", envoy.URL+"/api/"+userA.UUID+"/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request through the traced Envoy: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	var found stack.TraceSpan
	var trace []stack.TraceSpan
	testkit.Eventually(t, "extauthz's span in one of Envoy's traces at Jaeger", 30*time.Second, func() bool {
		traces, err := jg.Traces("extauthz")
		if err != nil {
			return false
		}
		for _, spans := range traces {
			for _, s := range spans {
				if s.Service != "extauthz" || s.OperationName != "extauthz.check" {
					continue
				}
				for _, p := range spans {
					if p.Service == "envoy" && slices.Contains(s.Parents, p.SpanID) {
						found, trace = s, spans
						return true
					}
				}
			}
		}
		return false
	})
	var names []string
	for _, s := range trace {
		names = append(names, s.Service+":"+s.OperationName)
	}
	t.Logf("trace %s: %s; extauthz.check is a child of Envoy's span %v", found.TraceID, strings.Join(names, ", "), found.Parents)
}
