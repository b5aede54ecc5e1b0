package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

func deny(code reason.Code, detail, rule string, tokenPresent bool) Decision {
	status := http.StatusForbidden
	switch {
	case code.BadRequest():
		status = http.StatusBadRequest
	case code.Unauthenticated():
		status = http.StatusUnauthorized
	}
	return Decision{Status: status, Reason: code, Detail: detail, Rule: rule, TokenPresent: tokenPresent}
}

// allowAnonymous lets a request through without identity: every identity header
// (and variant) is stripped, so a client cannot smuggle one past a public rule.
func allowAnonymous(p *policy.Policy, rule string, strip []string) Decision {
	d := Decision{Allow: true, Status: http.StatusOK, Rule: rule, RemoveSpellings: p.HeaderSpellings}
	d.RemoveHeaders = make([]string, 0, len(p.Identity)+len(policy.MethodOverrideHeaders)+len(strip))
	for _, h := range p.Identity {
		d.RemoveHeaders = append(d.RemoveHeaders, h.Name)
	}
	d.RemoveHeaders = append(d.RemoveHeaders, policy.MethodOverrideHeaders...)
	d.RemoveHeaders = append(d.RemoveHeaders, strip...)
	if p.AuthMethodHeader != "" {
		d.RemoveHeaders = append(d.RemoveHeaders, p.AuthMethodHeader)
	}
	return d
}

// Panicked is the decision for a request that made extauthz panic with v: a deny
// (internal_error, 403), logged with the stack and counted in
// extauthz_panics_total. req may be nil when the panic came before it was built.
// Front doors call it from their recover, so one bad request never takes the
// process down.
func (e *Engine) Panicked(ctx context.Context, transport metrics.Transport, req *Request, v any) Decision {
	d := deny(reason.InternalError, "panic: "+reason.Clip(fmt.Sprint(v), 200), RuleNone, false)
	e.metrics.Panic(transport)
	e.metrics.Decision(transport, false, string(d.Reason), d.Rule, 0, tracing.TraceID(ctx))
	e.log.LogAttrs(ctx, slog.LevelError, "panic while deciding; denied",
		slog.String("panic", reason.Clip(fmt.Sprint(v), 200)),
		slog.String("transport", string(transport)),
		slog.String("stack", string(debug.Stack())),
	)
	if req == nil {
		req = &Request{}
	}
	e.LogDeny(ctx, transport, req, d)
	return d
}
