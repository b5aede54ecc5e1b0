package engine

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// DefaultDenyLogsPerSecond is how many deny lines one reason may write a second;
// the rest are counted and summed up in one line when the second is over, so a
// token-stuffing client cannot flood the log.
const DefaultDenyLogsPerSecond = 20

// AllowLogsPerSecond caps the sampled allow lines a second, whatever the rate:
// a busy proxy at --log-allows 1 must not turn the log into the bottleneck.
const AllowLogsPerSecond = 200

// ShadowLogsPerSecond caps the lines of shadow rules' would-be decisions a
// second: every one is counted in extauthz_shadow_decisions_total, and the lines
// are a sample of them.
const ShadowLogsPerSecond = 20

// allowKey and shadowKey are the one windows of the allow and shadow lines.
const (
	allowKey  reason.Code = "allow"
	shadowKey reason.Code = "shadow"
)

// denyLimiter holds a one-second window per reason code. Codes are a fixed set,
// so the map stays small; each window is lock-free.
type denyLimiter struct {
	perSecond int64
	windows   sync.Map // reason.Code -> *logWindow
}

type logWindow struct {
	second     atomic.Int64
	n          atomic.Int64
	suppressed atomic.Int64
}

// allow reports whether a deny line for code may be written now, and how many
// lines of the previous window were suppressed (to report once).
func (l *denyLimiter) allow(code reason.Code, now time.Time) (ok bool, suppressed int64) {
	if l.perSecond <= 0 {
		return true, 0
	}
	v, _ := l.windows.Load(code)
	if v == nil {
		v, _ = l.windows.LoadOrStore(code, &logWindow{})
	}
	w := v.(*logWindow)
	sec := now.Unix()
	if old := w.second.Load(); old != sec && w.second.CompareAndSwap(old, sec) {
		w.n.Store(0)
		suppressed = w.suppressed.Swap(0)
	}
	if w.n.Add(1) <= l.perSecond {
		return true, suppressed
	}
	w.suppressed.Add(1)
	return false, suppressed
}

// logAllow writes the decision line of a sampled allow.
func (e *Engine) logAllow(ctx context.Context, transport metrics.Transport, req *Request, d Decision, took time.Duration) {
	path, _ := policy.Canonicalize(req.Path)
	host, _ := policy.CanonicalHost(req.Host)
	sub, iss := "", ""
	if d.Claims != nil {
		sub, iss = d.Claims.Subject, d.Claims.Issuer
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "allow",
		slog.String("rule", d.Rule),
		slog.String("method", reason.Clip(req.Method, maxLogMethod)),
		slog.String("path", reason.Clip(path.Canonical, maxLogPath)),
		slog.String("host", reason.Clip(host, maxLogHost)),
		slog.String("sub", reason.Clip(sub, maxLogSub)),
		slog.String("issuer", iss),
		slog.String("request_id", reason.Clip(req.RequestID, maxLogRequestID)),
		slog.String("trace_id", tracing.TraceID(ctx)),
		slog.Float64("latency_ms", float64(took.Microseconds())/1000),
		slog.String("transport", string(transport)),
	)
}

// logShadow writes the line of a shadow rule's would-be decision next to the
// decision that was taken.
func (e *Engine) logShadow(ctx context.Context, transport metrics.Transport, req *Request, d Decision, sd ShadowDecision) {
	e.log.LogAttrs(ctx, slog.LevelInfo, "shadow",
		slog.String("rule", sd.Rule),
		slog.String("would", shadowWould(sd)),
		slog.Int("would_status", sd.Status),
		slog.String("would_reason", string(sd.Reason)),
		slog.String("would_detail", reason.Clip(sd.Detail, maxLogDetail)),
		slog.String("decision", decisionName(d.Allow)),
		slog.String("decided_by", d.Rule),
		slog.String("reason", string(d.Reason)),
		slog.String("method", reason.Clip(req.Method, maxLogMethod)),
		slog.String("request_id", reason.Clip(req.RequestID, maxLogRequestID)),
		slog.String("trace_id", tracing.TraceID(ctx)),
		slog.String("transport", string(transport)),
	)
}

// sampled reports whether this allow is one of the rate's.
func (e *Engine) sampled() bool {
	return e.allowRate > 0 && (e.allowRate >= 1 || rand.Float64() < e.allowRate)
}
