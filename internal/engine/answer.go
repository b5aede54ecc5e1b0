package engine

import (
	"slices"
	"sync/atomic"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// Answer is an allow's identity headers derived once from one verification under
// one policy, rule and credential method, for every later request that presents
// the same (cached) credential: a browser sends one token on every call, and
// building the same headers per request was most of a warm check's cost. It is
// immutable except for Wire, which a front door fills once.
type Answer struct {
	policy *policy.Policy
	rule   *policy.Rule
	method string
	// SetHeaders and RemoveHeaders are the decision's; shared, do not modify.
	SetHeaders    []Header
	RemoveHeaders []string
	wire          atomic.Value
}

// Wire is the gRPC front door's encoding of the whole answer, once it has stored
// one with SetWire; nil before.
func (a *Answer) Wire() any { return a.wire.Load() }

// SetWire keeps the gRPC front door's encoding of the answer: an immutable value,
// of the same type every time.
func (a *Answer) SetWire(v any) { a.wire.Store(v) }

// answerSlot picks the Claims memo slot of a rule, so that a token used under a
// few rules keeps one answer for each.
func answerSlot(rule *policy.Rule) int {
	if rule == nil {
		return 0
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(rule.Name); i++ {
		h = (h ^ uint32(rule.Name[i])) * 16777619
	}
	return int(h % token.MemoSlots)
}

// answer returns the identity headers of an allow for claims under p and rule:
// from the claims' memo when it holds them for the same policy, rule and method,
// else built (and memoised from the second allow on). strip (header variants the
// request carried) is request-specific, so a request with any gets headers of its
// own, and so does a rule that strips credentials (cookie-specific).
func answer(p *policy.Policy, rule *policy.Rule, claims *token.Claims, method string, strip []string) (*Answer, []Header, []string) {
	memoable := len(strip) == 0 && (rule == nil || !rule.StripCredentials)
	slot := answerSlot(rule)
	if memoable {
		if a, ok := claims.Memo(slot).(*Answer); ok && a.policy == p && a.rule == rule && a.method == method {
			return a, a.SetHeaders, a.RemoveHeaders
		}
	}
	set, remove := identityHeaders(p.Identity, claims.Values, strip)
	if p.AuthMethodHeader != "" {
		set = append(set, Header{Name: p.AuthMethodHeader, Value: methodName(method)})
	}
	// Kept from the second allow of a verification on: a token used once (most
	// tokens in a burst of new sign-ins) costs the cache no memory for it.
	if !memoable || !claims.Reused() {
		return nil, set, remove
	}
	// Clipped: a front door that appends to a shared slice must get a copy.
	a := &Answer{policy: p, rule: rule, method: method, SetHeaders: slices.Clip(set), RemoveHeaders: slices.Clip(remove)}
	claims.SetMemo(slot, a)
	return a, a.SetHeaders, a.RemoveHeaders
}
