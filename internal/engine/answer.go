package engine

import (
	"runtime"
	"slices"
	"sync/atomic"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// DefaultAnswerBytes is Config.AnswerBytes when zero: about 20k tokens' answers,
// gRPC encoding included.
const DefaultAnswerBytes = 16 << 20

// Answer is an allow's identity headers derived once from one verification under
// one policy, rule and credential method, for every later request that presents
// the same (cached) credential: a browser sends one token on every call, and
// building the same headers per request was most of a warm check's cost. It is
// immutable except for its wire form, which a front door fills once (SetWire).
//
// It names the policy by generation and the rule by index rather than holding
// them, so that a reload does not keep the old policy alive in every cache entry.
type Answer struct {
	generation uint64
	rule       int // index in the policy's rules; -1: the default
	method     string
	// SetHeaders and RemoveHeaders are the decision's; shared, do not modify.
	SetHeaders    []Header
	RemoveHeaders []string
	wire          atomic.Value
}

// Wire is the gRPC front door's encoding of the whole answer, once it has stored
// one with SetWire; nil before.
func (a *Answer) Wire() any { return a.wire.Load() }

// SetWire keeps the gRPC front door's encoding of the answer: an immutable value,
// of the same type every time. The answer's budget charge included it.
func (a *Answer) SetWire(v any) { a.wire.Store(v) }

// answerBudget bounds the memory memoised answers hold, beyond the token cache's
// own budget: an answer is charged when built and released when the garbage
// collector frees it (its cache entry evicted, expired or overwritten).
type answerBudget struct {
	used, limit atomic.Int64
}

// answerSize estimates what an answer with these headers holds, its wire form
// included, from heap profiles of many: the struct, its memo slot and the
// cleanup record (about 300 bytes), the header slices, and the encoded response
// (its holders, the headers' names and values, about 100 bytes of the rest).
func answerSize(set []Header, remove []string) int {
	n := 300 + 32*len(set) + 100
	for _, h := range set {
		n += 8 + len(h.Name) + len(h.Value)
	}
	for _, r := range remove {
		n += 16 + 4 + len(r)
	}
	return n
}

// take charges n bytes for a, released when a is freed, if the budget has room.
func (b *answerBudget) take(a *Answer, n int) bool {
	if b == nil {
		return false
	}
	if b.used.Add(int64(n)) > b.limit.Load() {
		b.used.Add(-int64(n))
		return false
	}
	runtime.AddCleanup(a, func(n int64) { b.used.Add(-n) }, int64(n))
	return true
}

// answerSlot picks the Claims memo slot of a rule, so that a token used under a
// few rules keeps one answer for each.
func answerSlot(rule *policy.Rule) int {
	if rule == nil {
		return 0
	}
	return rule.Index() + 1
}

// answer returns the identity headers of an allow for claims under p and rule:
// from the claims' memo when it holds them for the same policy, rule and method,
// else built (and memoised from the second allow on, while the budget lasts; a nil
// budget memoises nothing). strip (header variants the request carried) is
// request-specific, so a request with any gets headers of its own, and so does a
// rule that strips credentials (cookie-specific).
func answer(p *policy.Policy, rule *policy.Rule, claims *token.Claims, method string, strip []string, budget *answerBudget) (*Answer, []Header, []string) {
	memoable := budget != nil && p.Generation() != 0 && len(strip) == 0 && (rule == nil || !rule.StripCredentials)
	ruleIndex := -1
	if rule != nil {
		ruleIndex = rule.Index()
	}
	slot := answerSlot(rule)
	if memoable {
		if a, ok := claims.Memo(slot).(*Answer); ok && a.generation == p.Generation() && a.rule == ruleIndex && a.method == method {
			return a, a.SetHeaders, a.RemoveHeaders
		}
	}
	set, remove := identityHeaders(p.Identity, claims.Values, strip)
	if p.AuthMethodHeader != "" {
		set = append(set, Header{Name: p.AuthMethodHeader, Value: methodName(method)})
	}
	// Kept from the second allow of a verification on: a token used once (most
	// tokens in a burst of new sign-ins) costs no memory for it.
	if !memoable || !claims.Reused() {
		return nil, set, remove
	}
	// Clipped: a front door that appends to a shared slice must get a copy.
	if slices.Equal(remove, policy.MethodOverrideHeaders) {
		remove = policy.MethodOverrideHeaders // every claim present: share the usual list
	}
	a := &Answer{generation: p.Generation(), rule: ruleIndex, method: method,
		SetHeaders: slices.Clip(set), RemoveHeaders: slices.Clip(remove)}
	if !budget.take(a, answerSize(set, remove)) {
		return nil, set, remove
	}
	claims.SetMemo(slot, a)
	return a, a.SetHeaders, a.RemoveHeaders
}
