package stack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
)

// Jaeger is a running Jaeger v2 with in-memory storage: OTLP receivers and the
// query API, all on 127.0.0.1.
type Jaeger struct {
	OTLPGRPC, OTLPHTTP, Query string
	Proc                      *Proc
}

// StartJaeger runs Jaeger with a config of its own ports.
func StartJaeger(t Tools, dir string) (*Jaeger, error) {
	addrs, err := testkit.FreeAddrs(4)
	if err != nil {
		return nil, err
	}
	j := &Jaeger{OTLPGRPC: addrs[0], OTLPHTTP: addrs[1], Query: addrs[2]}
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: { receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter] }
  telemetry: { metrics: { level: none }, logs: { level: warn } }
extensions:
  jaeger_query:
    storage: { traces: mem }
    http: { endpoint: %q }
    grpc: { endpoint: %q }
  jaeger_storage:
    backends: { mem: { memory: { max_traces: 10000 } } }
receivers:
  otlp:
    protocols: { grpc: { endpoint: %q }, http: { endpoint: %q } }
processors:
  batch: { timeout: 100ms }
exporters:
  jaeger_storage_exporter: { trace_storage: mem }
`, j.Query, addrs[3], j.OTLPGRPC, j.OTLPHTTP)
	path := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if j.Proc, err = Start(dir, "jaeger", nil, t.Jaeger, "--config", path); err != nil {
		return nil, err
	}
	if err := WaitHTTP(j.Proc, "http://"+j.Query+"/api/services", 200, 30*time.Second); err != nil {
		j.Proc.Stop()
		return nil, err
	}
	return j, nil
}

// TraceSpan is one span of a trace, as Jaeger's query API returns it.
type TraceSpan struct {
	TraceID, SpanID, OperationName, Service string
	Parents                                 []string
}

// Traces returns the spans of every trace that has a span of service.
func (j *Jaeger) Traces(service string) (map[string][]TraceSpan, error) {
	resp, err := http.Get("http://" + j.Query + "/api/traces?limit=50&service=" + url.QueryEscape(service))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data []struct {
			TraceID string `json:"traceID"`
			Spans   []struct {
				SpanID, OperationName, ProcessID string
				References                       []struct{ RefType, SpanID string }
			} `json:"spans"`
			Processes map[string]struct{ ServiceName string } `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string][]TraceSpan{}
	for _, tr := range body.Data {
		for _, s := range tr.Spans {
			ts := TraceSpan{TraceID: tr.TraceID, SpanID: s.SpanID, OperationName: s.OperationName, Service: tr.Processes[s.ProcessID].ServiceName}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					ts.Parents = append(ts.Parents, r.SpanID)
				}
			}
			out[tr.TraceID] = append(out[tr.TraceID], ts)
		}
	}
	return out, nil
}
