package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type revocationMetrics struct {
	age     *prometheus.GaugeVec
	entries *prometheus.GaugeVec
	polls   *prometheus.CounterVec
}

func newRevocationMetrics() revocationMetrics {
	return revocationMetrics{
		age: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "revocation_feed_age_seconds",
			Help: "Seconds since each issuer's revocation feed last answered (-1 before it ever did).",
		}, []string{"issuer"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "revocation_entries",
			Help: "Revoked sessions, users and bans held for each issuer.",
		}, []string{"issuer"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "revocation_polls_total",
			Help: "Revocation feed polls by issuer and result (ok|error).",
		}, []string{"issuer", "result"}),
	}
}

// RevocationPoll records one poll of an issuer's revocation feed: its result, the
// age of the last good answer (negative before any) and the entries held.
func (s *Recorder) RevocationPoll(issuer, result string, age time.Duration, entries int) {
	if s == nil {
		return
	}
	s.revocation.polls.WithLabelValues(issuer, result).Inc()
	a := age.Seconds()
	if age < 0 {
		a = -1
	}
	s.revocation.age.WithLabelValues(issuer).Set(a)
	s.revocation.entries.WithLabelValues(issuer).Set(float64(entries))
}

// RevocationForget removes an issuer's revocation series when its feed stops.
func (s *Recorder) RevocationForget(issuer string) {
	if s == nil {
		return
	}
	s.revocation.age.DeleteLabelValues(issuer)
	s.revocation.entries.DeleteLabelValues(issuer)
	s.revocation.polls.DeletePartialMatch(prometheus.Labels{"issuer": issuer})
}

// RevocationAgeGauge is the feed age gauge of issuer, for tests.
func (s *Recorder) RevocationAgeGauge(issuer string) prometheus.Gauge {
	return s.revocation.age.WithLabelValues(issuer)
}
