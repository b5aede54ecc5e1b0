package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
)

// TestDecisionExemplar: a sampled trace's id rides on the latency observation as
// an exemplar; an untraced check adds none.
func TestDecisionExemplar(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Decision(metrics.TransportGRPC, true, "", "own-tasks", 3*time.Millisecond, "")
	m.Decision(metrics.TransportGRPC, true, "", "own-tasks", 3*time.Millisecond, "4bf92f3577b34da6a3ce929d0e0e4736")
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exemplars []string
	for _, f := range fams {
		if f.GetName() != "extauthz_check_duration_seconds" {
			continue
		}
		for _, mm := range f.GetMetric() {
			for _, b := range mm.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					for _, l := range ex.GetLabel() {
						exemplars = append(exemplars, l.GetName()+"="+l.GetValue())
					}
				}
			}
		}
	}
	if len(exemplars) != 1 || exemplars[0] != "trace_id=4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("exemplars %v, want the one trace id", exemplars)
	}
}
