package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type tlsMetrics struct {
	handshakeErrors *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	notAfter        *prometheus.GaugeVec
}

func newTLSMetrics() tlsMetrics {
	return tlsMetrics{
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "tls_handshake_errors_total",
			Help: "Refused TLS handshakes by listener (grpc|http|admin) and reason (no_client_cert|bad_client_cert|san_not_allowed|other).",
		}, []string{"listener", "reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "tls_reloads_total",
			Help: "Loads of the serving certificate files by result (applied|rejected).",
		}, []string{"result"}),
		// A labelled vector, so that the series exists only with TLS on (an
		// expiry of 0 would look like an expired certificate).
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "tls_certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the serving certificate in use expires.",
		}, []string{"certificate"}),
	}
}

// TLSHandshakeFailed counts a refused handshake.
func (s *Recorder) TLSHandshakeFailed(listener, reason string) {
	if s == nil {
		return
	}
	s.tls.handshakeErrors.WithLabelValues(listener, reason).Inc()
}

// TLSReloaded records a load of the certificate files: the expiry of the pair in
// use when it was applied, a rejection otherwise.
func (s *Recorder) TLSReloaded(err error, notAfter time.Time) {
	if s == nil {
		return
	}
	// Both series exist from the first load, so an alert on the increase of
	// "rejected" sees the step from 0.
	applied, rejected := s.tls.reloads.WithLabelValues("applied"), s.tls.reloads.WithLabelValues("rejected")
	if err != nil {
		rejected.Inc()
		return
	}
	applied.Inc()
	s.tls.notAfter.WithLabelValues("serving").Set(float64(notAfter.Unix()))
}

// TLSHandshakeErrors exposes one handshake error counter (for tests).
func (s *Recorder) TLSHandshakeErrors(listener, reason string) prometheus.Counter {
	return s.tls.handshakeErrors.WithLabelValues(listener, reason)
}

// TLSReloads exposes one reload counter (for tests).
func (s *Recorder) TLSReloads(result string) prometheus.Counter {
	return s.tls.reloads.WithLabelValues(result)
}
