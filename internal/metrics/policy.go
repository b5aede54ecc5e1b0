package metrics

import "github.com/prometheus/client_golang/prometheus"

// policyMetrics are the collectors of shadow rules and policy fragments.
type policyMetrics struct {
	shadow   *prometheus.CounterVec
	fragment *prometheus.GaugeVec
}

func newPolicyMetrics() policyMetrics {
	return policyMetrics{
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "shadow_decisions_total",
			Help: "What shadow rules would have decided, by rule, would-be decision (allow|deny|unknown) and reason; they never change a decision.",
		}, []string{"rule", "would", "reason"}),
		fragment: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "policy_fragment_applied",
			Help: "1 when the policy fragment (namespace/name) is in force, 0 when it was rejected (see its Events).",
		}, []string{"fragment"}),
	}
}

// Shadow counts one would-be decision of a shadow rule: would is allow, deny or
// unknown (a credential only Better Auth can check).
func (s *Recorder) Shadow(rule, would, reason string) {
	if s == nil {
		return
	}
	s.policy.shadow.WithLabelValues(rule, would, reason).Inc()
}

// Fragments sets the state of every fragment and drops the series of those
// no longer watched.
func (s *Recorder) Fragments(applied map[string]bool) {
	if s == nil {
		return
	}
	s.policy.fragment.Reset()
	for id, ok := range applied {
		v := 0.0
		if ok {
			v = 1
		}
		s.policy.fragment.WithLabelValues(id).Set(v)
	}
}

// FragmentGauge returns one fragment's series, for tests.
func (s *Recorder) FragmentGauge(id string) prometheus.Gauge {
	return s.policy.fragment.WithLabelValues(id)
}
