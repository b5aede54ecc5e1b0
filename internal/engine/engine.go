// Package engine takes authorization decisions. It is the one place that combines
// the policy snapshot and the token verifier; the front doors in package authz only
// translate requests in and decisions out.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/online"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// Rule labels for decisions that no configured rule took.
const (
	RuleDefault   = "(default)"
	RulePreflight = "(cors-preflight)"
	RuleNone      = "(none)"
)

// Request is a proxy's question, reduced to what a decision needs.
type Request struct {
	Method string
	// Path as the proxy saw it, query string included.
	Path string
	Host string
	// Authorization holds every Authorization header value (normally one).
	Authorization []string
	// Origin and PreflightMethod (Access-Control-Request-Method) identify CORS preflights.
	Origin          string
	PreflightMethod string
	// RequestID (x-request-id) is logged with denies.
	RequestID string
	// UnderscoreHeaders are the names of request headers that contain "_" or ".",
	// as the proxy sent them. CGI/WSGI backends read x_user_uuid as x-user-uuid, so a
	// variant of an identity header must be removed too (oauth2-proxy CVE-2025-64484).
	UnderscoreHeaders []string
	// MethodOverride is true when the request carries a method-override header.
	MethodOverride bool
	// Cookies are the Cookie header values (Better Auth's session cookies).
	Cookies []string
	// APIKey is the x-api-key header (the api-key plugin's keys).
	APIKey string
	// ClientAddress is forwarded to Better Auth's get-session as X-Forwarded-For.
	ClientAddress string
	// Referer stands in for a missing Origin in the CSRF check.
	Referer string
	// Accept tells a browser navigation (HTML preferred) from an API call.
	Accept string
	// CannotRemove is set by front doors whose proxy can only overwrite the identity
	// headers by name (nginx auth_request, Traefik forwardAuth): a request carrying a
	// header that must be removed is then denied instead.
	CannotRemove bool
}

// Header is one header to set on the upstream request.
type Header struct {
	Name, Value string
}

// Decision is the answer to one Request.
type Decision struct {
	Allow bool
	// Status is the HTTP status for the client: 200, 400, 401 or 403.
	Status int
	// Reason is empty on allow.
	Reason reason.Code
	// Detail explains Reason for logs and the CLI; it never goes to the client.
	Detail string
	// Rule names the rule that decided.
	Rule string
	// TokenPresent is true when the request carried a Bearer token (RFC 6750 error reporting).
	TokenPresent bool
	// SetHeaders and RemoveHeaders are the identity headers to set and to strip, on
	// allow. They may be shared with other decisions: do not modify.
	SetHeaders    []Header
	RemoveHeaders []string
	// Answer, on some allows, is where SetHeaders and RemoveHeaders came from: the
	// same for every request with the same credential, policy and rule, so that a
	// front door can keep its encoding of them (Answer.SetWire). Nil otherwise.
	Answer *Answer
	// RemoveSpellings are every "_"/"-" spelling of the identity and method-override
	// headers (policy.Policy.HeaderSpellings, shared: do not modify), for front
	// doors that cannot see which ones the request carried.
	RemoveSpellings []string
	// Claims are the verified claims, when a token was verified.
	Claims *token.Claims
	// Location, on a 302 deny, is where the browser is sent to sign in.
	Location string
	// Shadow holds what the shadow rules that matched would have decided; it
	// never changes the decision.
	Shadow []ShadowDecision
}

// Snapshot is everything one decision reads: built whole, swapped whole.
type Snapshot struct {
	Policy   *policy.Policy
	Verifier *token.Verifier
	// Now is the clock account checks (bans, token age) use; the verifier's.
	Now func() time.Time
	// Revocations holds, by issuer, what says whether a token was revoked since it
	// was issued (issuers with a revocation feed only).
	Revocations map[string]RevocationChecker
	// Online holds, by issuer, the get-session check of credentials that cannot
	// be verified offline (issuers that accept them only).
	Online map[string]*online.Verifier
	// Ready is closed when every issuer's first JWKS fetch has finished.
	Ready <-chan struct{}
}

// Engine decides requests against the current Snapshot.
type Engine struct {
	snap      atomic.Pointer[Snapshot]
	metrics   *metrics.Recorder
	log       *slog.Logger
	allowRate float64
	denies    denyLimiter
	allows    denyLimiter
	answers   *answerBudget // nil: answers are not memoised
	shadows   denyLimiter
}

// Config configures an Engine.
type Config struct {
	// Metrics may be nil (nothing recorded).
	Metrics *metrics.Recorder
	// Log receives denies and panics; slog.Default() when nil.
	Log *slog.Logger
	// LogAllows is the fraction of allows that get a decision line (0 to 1;
	// 0, the default, logs none).
	LogAllows float64
	// AnswerBytes bounds the memory of memoised allow answers (see Answer), beyond
	// the token cache's: DefaultAnswerBytes when zero; negative memoises none.
	AnswerBytes int
	// DenyLogsPerSecond caps the deny lines of each reason code a second
	// (DefaultDenyLogsPerSecond when zero, no cap when negative); the rest are
	// counted, and summed up in one line.
	DenyLogsPerSecond int
}

// New returns an Engine with no snapshot: it denies everything until Swap.
func New(cfg Config) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DenyLogsPerSecond == 0 {
		cfg.DenyLogsPerSecond = DefaultDenyLogsPerSecond
	}
	e := &Engine{metrics: cfg.Metrics, log: cfg.Log, allowRate: min(max(cfg.LogAllows, 0), 1)}
	if cfg.AnswerBytes == 0 {
		cfg.AnswerBytes = DefaultAnswerBytes
	}
	if cfg.AnswerBytes > 0 {
		e.answers = &answerBudget{}
		e.answers.limit.Store(int64(cfg.AnswerBytes))
	}
	e.denies.perSecond = int64(cfg.DenyLogsPerSecond)
	e.allows.perSecond = AllowLogsPerSecond
	e.shadows.perSecond = ShadowLogsPerSecond
	return e
}

// Swap installs s for all decisions that start after it returns.
func (e *Engine) Swap(s *Snapshot) { e.snap.Store(s) }

// Current returns the snapshot in force, or nil.
func (e *Engine) Current() *Snapshot { return e.snap.Load() }

// Ready reports whether a snapshot is in force and its key sets have answered once.
func (e *Engine) Ready() bool {
	s := e.snap.Load()
	if s == nil {
		return false
	}
	if s.Ready == nil {
		return true
	}
	select {
	case <-s.Ready:
		return true
	default:
		return false
	}
}

// Check decides req, records metrics and logs a deny. transport labels the metrics.
func (e *Engine) Check(ctx context.Context, transport metrics.Transport, req *Request) Decision {
	start := time.Now()
	var span trace.Span
	if tracing.Enabled() {
		ctx, span = tracing.StartCheck(ctx)
	}
	d := e.Decide(ctx, req)
	took := time.Since(start)
	if span != nil && span.IsRecording() {
		// Outcome only: never a token, a claim or a header value.
		span.SetAttributes(attribute.String("extauthz.decision", decisionName(d.Allow)), attribute.String("extauthz.rule", d.Rule),
			attribute.String("extauthz.reason", string(d.Reason)), attribute.Int("http.response.status_code", d.Status),
			attribute.String("extauthz.transport", string(transport)))
		if !d.Allow {
			span.SetStatus(codes.Error, string(d.Reason))
		}
	}
	if span != nil {
		span.End()
	}
	e.metrics.Decision(transport, d.Allow, string(d.Reason), d.Rule, took, tracing.TraceID(ctx))
	for _, sd := range d.Shadow {
		e.metrics.Shadow(sd.Rule, shadowWould(sd), string(sd.Reason))
		if ok, _ := e.shadows.allow(shadowKey, start); ok {
			e.logShadow(ctx, transport, req, d, sd)
		} else {
			e.metrics.LogSuppressed("shadow")
		}
	}
	if !d.Allow {
		ok, suppressed := e.denies.allow(d.Reason, start)
		if suppressed > 0 {
			e.log.LogAttrs(ctx, slog.LevelWarn, "deny lines suppressed", slog.String("reason", string(d.Reason)),
				slog.Int64("count", suppressed), slog.Int64("limit_per_second", e.denies.perSecond))
		}
		if ok {
			e.LogDeny(ctx, transport, req, d)
		} else {
			e.metrics.LogSuppressed("deny")
		}
	} else if d.Claims != nil && e.sampled() {
		// Authenticated allows only: an anonymous allow (a public rule, a preflight)
		// has no identity to audit, and public paths are where secrets ride in the
		// path (Better Auth's reset-password links).
		if ok, _ := e.allows.allow(allowKey, start); ok {
			e.logAllow(ctx, transport, req, d, took)
		} else {
			e.metrics.LogSuppressed("allow")
		}
	}
	return d
}

func shadowWould(sd ShadowDecision) string {
	if sd.Unknown {
		return "unknown"
	}
	return decisionName(sd.Allow)
}

func decisionName(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// Bounds of request-derived log fields: a client chooses these values.
const (
	maxLogRequestID = 128
	maxLogMethod    = 16
	maxLogDetail    = 512
	maxLogPath      = 512
	maxLogHost      = 256
	maxLogSub       = 128
)

// LogDeny writes the one log line of a deny.
func (e *Engine) LogDeny(ctx context.Context, transport metrics.Transport, req *Request, d Decision) {
	e.log.LogAttrs(ctx, slog.LevelInfo, "deny",
		slog.String("reason", string(d.Reason)),
		slog.String("detail", reason.Clip(d.Detail, maxLogDetail)),
		slog.String("rule", d.Rule),
		slog.Int("status", d.Status),
		slog.String("request_id", reason.Clip(req.RequestID, maxLogRequestID)),
		slog.String("method", reason.Clip(req.Method, maxLogMethod)),
		slog.String("transport", string(transport)),
		slog.String("trace_id", tracing.TraceID(ctx)),
	)
}

// Decide is Check without metrics and logs (the CLI's explain uses it).
func (e *Engine) Decide(ctx context.Context, req *Request) Decision {
	s := e.snap.Load()
	if s == nil {
		return deny(reason.NotReady, "no valid policy is loaded", RuleNone, false)
	}
	p := s.Policy
	if err := policy.CheckMethod(req.Method); err != nil {
		return deny(reason.MethodRejected, err.Error(), RuleNone, false)
	}
	host, err := policy.CanonicalHost(req.Host)
	if err != nil {
		return deny(reason.HostRejected, err.Error(), RuleNone, false)
	}
	var segs [16]string
	path, err := policy.CanonicalizeTo(req.Path, segs[:0])
	if err != nil {
		return deny(reason.PathRejected, err.Error(), RuleNone, false)
	}
	if err := policy.CheckQuery(req.Path); err != nil {
		return deny(reason.MethodRejected, err.Error(), RuleNone, false)
	}
	strip := smuggled(p, req.UnderscoreHeaders)
	if req.CannotRemove {
		if req.MethodOverride {
			return deny(reason.MethodRejected, "method-override header, which this proxy cannot remove", RuleNone, false)
		}
		if len(strip) > 0 {
			return deny(reason.HeaderRejected, "variant of identity header "+reason.Clip(strip[0], 64)+", which this proxy cannot remove", RuleNone, false)
		}
	}
	preq := &policy.Request{Method: req.Method, Host: host, Path: path}

	if p.AllowPreflight && req.Method == http.MethodOptions && req.Origin != "" && req.PreflightMethod != "" {
		return allowAnonymous(p, RulePreflight, strip)
	}
	var pbuf [4]policy.Param
	rule, params := p.MatchTo(preq, pbuf[:0])
	var auth authOnce
	d := s.decideRule(ctx, req, preq, rule, params, strip, &auth, false, e.answers)
	if p.HasShadow {
		if shadows := p.Shadows(preq, rule); len(shadows) > 0 {
			sctx := context.WithValue(ctx, noOnline{}, true)
			for _, m := range shadows {
				w := s.decideRule(sctx, req, preq, m.Rule, m.Params, strip, &auth, true, nil)
				d.Shadow = append(d.Shadow, ShadowDecision{Rule: m.Rule.Name, Allow: w.Allow, Unknown: w.Status == 0,
					Status: w.Status, Reason: w.Reason, Detail: w.Detail})
			}
		}
	}
	return d
}

// ShadowDecision is what a shadow rule would have decided.
type ShadowDecision struct {
	Rule  string
	Allow bool
	// Unknown: the credential is one only Better Auth can check (an API key, a
	// session without its cookie cache), and a shadow rule makes no such call.
	Unknown bool
	Status  int
	Reason  reason.Code
	Detail  string
}

// authOnce authenticates a request at most once, however many rules (the
// deciding one and shadow ones) need its credential.
type authOnce struct {
	done   bool
	claims *token.Claims
	method string
	err    error
}

func (a *authOnce) get(ctx context.Context, s *Snapshot, req *Request) (*token.Claims, string, error) {
	if !a.done {
		a.claims, a.method, a.err = s.authenticate(ctx, req)
		a.done = true
	}
	return a.claims, a.method, a.err
}

// decideRule decides req as rule (nil: no rule matched) would.
// A shadow evaluation builds no headers.
func (s *Snapshot) decideRule(ctx context.Context, req *Request, preq *policy.Request, rule *policy.Rule, params policy.Params, strip []string, auth *authOnce, shadow bool, answers *answerBudget) Decision {
	p := s.Policy
	if rule == nil && p.Default == policy.DefaultDeny {
		return deny(reason.NoRule, "no rule matches and default is deny", RuleDefault, len(req.Authorization) > 0)
	}
	if rule != nil && rule.Public {
		return allowAnonymous(p, rule.Name, strip)
	}
	ruleName := RuleDefault
	if rule != nil {
		ruleName = rule.Name
	}
	claims, method, err := auth.get(ctx, s, req)
	if errors.Is(err, errOnlineSkipped) {
		return Decision{Rule: ruleName, Detail: err.Error()} // Status 0: unknown (shadow rules only)
	}
	if err != nil {
		var re *reason.Error
		if !errors.As(err, &re) {
			re = reason.Wrap(reason.TokenMalformed, "unclassified verification error", err)
		}
		d := deny(re.Code, re.Message(), ruleName, re.Code != reason.TokenMissing)
		if rule != nil && rule.SignInURL != "" && d.Status == http.StatusUnauthorized && navigation(req) {
			d.Status, d.Location = http.StatusFound, signInLocation(rule.SignInURL, req.Path)
		}
		return d
	}
	code, detail := s.checkAccount(claims, rule, method)
	if code == "" && (method == MethodSession || method == methodOnlineCookie) {
		code, detail = s.checkOrigin(claims.Issuer, req)
	}
	if code == "" {
		code, detail = s.checkIssuerHost(claims.Issuer, preq.Host)
	}
	if code != "" {
		d := deny(code, detail, ruleName, true)
		d.Claims = claims
		return d
	}
	if rule != nil {
		if code, detail := rule.Authorize(&claims.Values, preq, params); code != "" {
			d := deny(code, detail, ruleName, true)
			d.Claims = claims
			return d
		}
	}
	if rule != nil && rule.StripCredentials && req.CannotRemove {
		return deny(reason.HeaderRejected, "the rule keeps credentials from the backend, which this proxy cannot do", ruleName, true)
	}
	d := Decision{Allow: true, Status: http.StatusOK, Rule: ruleName, TokenPresent: true, Claims: claims, RemoveSpellings: p.HeaderSpellings}
	if shadow {
		return d // only allow or deny is kept of a shadow rule's decision
	}
	d.Answer, d.SetHeaders, d.RemoveHeaders = answer(p, rule, claims, method, strip, answers)
	if rule != nil && rule.StripCredentials {
		d.SetHeaders, d.RemoveHeaders = stripCredentials(p, req, d.SetHeaders, d.RemoveHeaders)
	}
	return d
}

// smuggled returns the request header names that a backend might read as one of the
// policy's identity headers: the same name with "_" for "-", in any case.
func smuggled(p *policy.Policy, names []string) []string {
	var out []string
	for _, n := range names {
		for _, h := range p.Identity {
			if sameHeaderName(n, h.Name) {
				out = append(out, n)
				break
			}
		}
		if sameHeaderName(n, p.AuthMethodHeader) && !slices.Contains(out, n) {
			out = append(out, n)
		}
		// X_HTTP_METHOD_OVERRIDE reaches Rack and PHP as the override header too.
		for _, h := range policy.MethodOverrideHeaders {
			if sameHeaderName(n, h) && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// sameHeaderName compares a received header name with a configured (lower-case,
// "-") one the way CGI does: case-insensitively, "_" equal to "-"; and "." equal
// to "-", since PHP turns both into "_" in $_SERVER.
func sameHeaderName(got, want string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := 0; i < len(got); i++ {
		c := got[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
