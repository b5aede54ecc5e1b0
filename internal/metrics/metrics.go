// Package metrics holds the Prometheus collectors of the service.
//
// All methods are safe on a nil *Set, so packages and tests that do not care about
// metrics pass nil. No label ever carries a user id or a token: labels are limited
// to decisions, reason codes, rule names, transports and issuer URLs, all of which
// come from configuration or from closed sets.
package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "extauthz"

// Transport labels a decision with the front door that asked for it.
type Transport string

// Transports.
const (
	TransportGRPC Transport = "grpc" // Envoy's ext_authz gRPC service
	TransportHTTP Transport = "http" // the HTTP check endpoint (Envoy HTTP mode, nginx, Traefik)
)

// Recorder is the collection of collectors one server exports.
type Recorder struct {
	decisions       *prometheus.CounterVec
	checkDuration   *prometheus.HistogramVec
	jwksRefresh     *prometheus.CounterVec
	jwksKeys        *prometheus.GaugeVec
	jwksLastSuccess *prometheus.GaugeVec
	jwksSuppressed  *prometheus.CounterVec
	jwksSkipped     *prometheus.GaugeVec
	panics          *prometheus.CounterVec
	policyInfo      *prometheus.GaugeVec
	policyReloads   *prometheus.CounterVec
	ready           prometheus.Gauge
	buildInfo       *prometheus.GaugeVec
	revocation      revocationMetrics
	tls             tlsMetrics
	logsSuppressed  *prometheus.CounterVec
	policy          policyMetrics
	reg             prometheus.Registerer

	// durations are checkDuration's children by transport, resolved once.
	durations map[Transport]prometheus.Observer
	// resolved holds decisions' children already looked up (see decisionCounter).
	resolved   atomic.Pointer[map[decisionKey]prometheus.Counter]
	resolvedMu sync.Mutex
}

// New creates the collectors and registers them, plus the Go and process collectors, on reg.
func New(reg prometheus.Registerer) *Recorder {
	s := &Recorder{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decisions_total",
			Help: "Authorization decisions by decision (allow|deny), reason code and matched rule.",
		}, []string{"decision", "reason", "rule"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "check_duration_seconds",
			Help:    "Time spent deciding one check, by transport (grpc|http).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"transport"}),
		jwksRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jwks_refresh_total",
			Help: "JWKS fetches by issuer, trigger (background|unknown_kid) and result (success|error).",
		}, []string{"issuer", "trigger", "result"}),
		jwksKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "jwks_keys",
			Help: "Usable keys in the cached JWKS of each issuer.",
		}, []string{"issuer"}),
		jwksLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful JWKS fetch of each issuer.",
		}, []string{"issuer"}),
		jwksSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "jwks_refetch_suppressed_total",
			Help: "Unknown-kid refetches not made because the issuer's cooldown had not passed.",
		}, []string{"issuer"}),
		jwksSkipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "jwks_skipped_keys",
			Help: "Keys in the last fetched JWKS of each issuer that were skipped as unusable (see the log).",
		}, []string{"issuer"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "panics_total",
			Help: "Requests that made extauthz panic, by transport; each was denied and the process kept serving.",
		}, []string{"transport"}),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "policy_info",
			Help: "Always 1; the hash label identifies the policy in force.",
		}, []string{"hash"}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "policy_reloads_total",
			Help: "Policy loads by source and result (applied|rejected).",
		}, []string{"source", "result"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "ready",
			Help: "1 when the service has a policy and a first JWKS answer for every issuer.",
		}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help: "Always 1; labels describe the running build.",
		}, []string{"version", "goversion"}),
		revocation: newRevocationMetrics(),
		tls:        newTLSMetrics(),
		logsSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decision_logs_suppressed_total",
			Help: "Decision log lines not written because of the per-second caps, by kind (deny|allow|shadow).",
		}, []string{"kind"}),
		policy: newPolicyMetrics(),
		reg:    reg,
	}
	s.durations = map[Transport]prometheus.Observer{
		TransportGRPC: s.checkDuration.WithLabelValues(string(TransportGRPC)),
		TransportHTTP: s.checkDuration.WithLabelValues(string(TransportHTTP)),
	}
	// Pre-create the panic series so that an alert on their increase sees a zero first.
	s.panics.WithLabelValues(string(TransportGRPC))
	s.panics.WithLabelValues(string(TransportHTTP))
	reg.MustRegister(s.decisions, s.checkDuration, s.jwksRefresh, s.jwksKeys, s.jwksLastSuccess,
		s.jwksSuppressed, s.jwksSkipped, s.panics, s.policyInfo, s.policyReloads, s.ready, s.buildInfo,
		s.revocation.age, s.revocation.entries, s.revocation.polls,
		s.tls.handshakeErrors, s.tls.reloads, s.tls.notAfter, s.logsSuppressed, s.policy.shadow, s.policy.fragment,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// Decision counts one decision and observes its latency; a traceID (of a sampled
// trace) becomes the observation's exemplar.
func (s *Recorder) Decision(transport Transport, allow bool, reason, rule string, took time.Duration, traceID string) {
	if s == nil {
		return
	}
	s.decisionCounter(decisionKey{allow, reason, rule}).Inc()
	h := s.durations[transport]
	if h == nil {
		h = s.checkDuration.WithLabelValues(string(transport))
	}
	if traceID != "" {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(took.Seconds(), prometheus.Labels{"trace_id": traceID})
			return
		}
	}
	h.Observe(took.Seconds())
}

type decisionKey struct {
	allow        bool
	reason, rule string
}

// maxDecisionCounters bounds the resolved-counter map; rule names come from
// configuration and reasons from a closed set, so only many reloads with renamed
// rules reach it, and then the rest are resolved per call.
const maxDecisionCounters = 4096

// decisionCounter returns the decisions_total child for k. WithLabelValues hashes
// the label values and takes a read lock on every call; the resolved children live
// in a map that is replaced, never changed, so a check reads it without a lock.
func (s *Recorder) decisionCounter(k decisionKey) prometheus.Counter {
	if m := s.resolved.Load(); m != nil {
		if c, ok := (*m)[k]; ok {
			return c
		}
	}
	d := "deny"
	if k.allow {
		d = "allow"
	}
	c := s.decisions.WithLabelValues(d, k.reason, k.rule)
	s.resolvedMu.Lock()
	defer s.resolvedMu.Unlock()
	m := map[decisionKey]prometheus.Counter{}
	if old := s.resolved.Load(); old != nil {
		if len(*old) >= maxDecisionCounters {
			return c
		}
		m = maps.Clone(*old)
	}
	m[k] = c
	s.resolved.Store(&m)
	return c
}

// JWKSRegistered creates an issuer's JWKS series (no fetch yet, no keys, last
// success at 0) when its cache starts, so that an issuer whose keys have never been
// fetched shows in alerts instead of being absent. Series that exist are kept.
func (s *Recorder) JWKSRegistered(issuer string) {
	if s == nil {
		return
	}
	for _, result := range []string{"success", "error"} {
		s.jwksRefresh.WithLabelValues(issuer, "background", result)
	}
	s.jwksKeys.WithLabelValues(issuer)
	s.jwksLastSuccess.WithLabelValues(issuer)
	s.jwksSkipped.WithLabelValues(issuer)
}

// JWKSFetched records one JWKS fetch. keys < 0 leaves the key gauge alone.
func (s *Recorder) JWKSFetched(issuer, trigger string, err error, keys int, at time.Time) {
	if s == nil {
		return
	}
	if err != nil {
		s.jwksRefresh.WithLabelValues(issuer, trigger, "error").Inc()
		return
	}
	s.jwksRefresh.WithLabelValues(issuer, trigger, "success").Inc()
	s.jwksKeys.WithLabelValues(issuer).Set(float64(keys))
	s.jwksLastSuccess.WithLabelValues(issuer).Set(float64(at.UnixNano()) / 1e9)
}

// JWKSSkipped records how many keys of the last fetched set were unusable.
func (s *Recorder) JWKSSkipped(issuer string, n int) {
	if s == nil {
		return
	}
	s.jwksSkipped.WithLabelValues(issuer).Set(float64(n))
}

// Panic counts a request that panicked.
func (s *Recorder) Panic(transport Transport) {
	if s == nil {
		return
	}
	s.panics.WithLabelValues(string(transport)).Inc()
}

// JWKSSkippedGauge exposes the skipped-key gauge of one issuer (for tests).
func (s *Recorder) JWKSSkippedGauge(issuer string) prometheus.Gauge {
	return s.jwksSkipped.WithLabelValues(issuer)
}

// PanicCounter exposes the panic counter of one transport (for tests).
func (s *Recorder) PanicCounter(transport Transport) prometheus.Counter {
	return s.panics.WithLabelValues(string(transport))
}

// JWKSDropped records that an issuer's key set was discarded (too stale).
func (s *Recorder) JWKSDropped(issuer string) {
	if s == nil {
		return
	}
	s.jwksKeys.WithLabelValues(issuer).Set(0)
}

// JWKSForget removes an issuer's series when the issuer leaves the policy.
func (s *Recorder) JWKSForget(issuer string) {
	if s == nil {
		return
	}
	s.jwksKeys.DeleteLabelValues(issuer)
	s.jwksLastSuccess.DeleteLabelValues(issuer)
	s.jwksSkipped.DeleteLabelValues(issuer)
	s.jwksRefresh.DeletePartialMatch(prometheus.Labels{"issuer": issuer})
	s.jwksSuppressed.DeleteLabelValues(issuer)
}

// RefetchSuppressed counts an unknown-kid refetch skipped by the cooldown.
func (s *Recorder) RefetchSuppressed(issuer string) {
	if s == nil {
		return
	}
	s.jwksSuppressed.WithLabelValues(issuer).Inc()
}

// PolicyApplied records the hash of the policy now in force.
func (s *Recorder) PolicyApplied(source, hash string) {
	if s == nil {
		return
	}
	s.policyInfo.Reset()
	s.policyInfo.WithLabelValues(hash).Set(1)
	s.policyReloads.WithLabelValues(source, "applied").Inc()
	// The rejected series from 0, so that the alert on its increase sees the first.
	s.policyReloads.WithLabelValues(source, "rejected")
}

// PolicyRejected counts a policy update that was refused.
func (s *Recorder) PolicyRejected(source string) {
	if s == nil {
		return
	}
	s.policyReloads.WithLabelValues(source, "rejected").Inc()
}

// LogSuppressed counts a decision log line not written (kind deny or allow).
func (s *Recorder) LogSuppressed(kind string) {
	if s == nil {
		return
	}
	s.logsSuppressed.WithLabelValues(kind).Inc()
}

// SetReady mirrors the readiness probe.
func (s *Recorder) SetReady(ready bool) {
	if s == nil {
		return
	}
	v := 0.0
	if ready {
		v = 1
	}
	s.ready.Set(v)
}

// BuildInfo publishes the build description.
func (s *Recorder) BuildInfo(version, goVersion string) {
	if s == nil {
		return
	}
	s.buildInfo.WithLabelValues(version, goVersion).Set(1)
}

// JWKSKeysGauge exposes the key gauge of one issuer (for tests).
func (s *Recorder) JWKSKeysGauge(issuer string) prometheus.Gauge {
	return s.jwksKeys.WithLabelValues(issuer)
}

// RefetchSuppressedCounter exposes the suppressed-refetch counter of one issuer (for tests).
func (s *Recorder) RefetchSuppressedCounter(issuer string) prometheus.Counter {
	return s.jwksSuppressed.WithLabelValues(issuer)
}

// PolicyReloadCounter exposes the reload counter of one source and result (for tests).
func (s *Recorder) PolicyReloadCounter(source, result string) prometheus.Counter {
	return s.policyReloads.WithLabelValues(source, result)
}

// TokenCacheStats are the counters of the verified-token cache.
type TokenCacheStats struct {
	Hits, Misses, Evictions uint64
	Entries, Bytes          int
}

// TokenCache exports the verified-token cache, reading stats at scrape time so the
// hit path only bumps its own atomic counters.
func (s *Recorder) TokenCache(stats func() TokenCacheStats) {
	if s == nil {
		return
	}
	counter := func(name, help string, v func(TokenCacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help},
			func() float64 { return float64(v(stats())) })
	}
	gauge := func(name, help string, v func(TokenCacheStats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help},
			func() float64 { return float64(v(stats())) })
	}
	s.reg.MustRegister(
		counter("token_cache_hits_total", "Checks answered from the verified-token cache.", func(t TokenCacheStats) uint64 { return t.Hits }),
		counter("token_cache_misses_total", "Checks whose token was not in the cache (verified in full).", func(t TokenCacheStats) uint64 { return t.Misses }),
		counter("token_cache_evictions_total", "Tokens evicted to stay within the cache's bounds.", func(t TokenCacheStats) uint64 { return t.Evictions }),
		gauge("token_cache_entries", "Tokens in the verified-token cache.", func(t TokenCacheStats) int { return t.Entries }),
		gauge("token_cache_bytes", "Estimated memory held by the verified-token cache.", func(t TokenCacheStats) int { return t.Bytes }),
	)
}
