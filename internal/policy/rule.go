package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/uuid"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// Rule is one compiled rule.
type Rule struct {
	// Name labels metrics and logs.
	Name string
	// Public rules need no token.
	Public bool
	// Owner, when set, requires a path parameter to equal a claim.
	Owner *OwnerConfig
	// When is the CEL condition as written ("" when none).
	When string

	methods []string
	hosts   []string
	paths   []*Template
	when    cel.Program
	// whenClaims are the claims `when` reads; whenAnyClaim: it may read any.
	whenClaims   []string
	whenAnyClaim bool
}

// Request is what a rule is matched against.
type Request struct {
	Method string
	Host   string
	Path   Path
}

// Match returns the first rule matching req, with the parameters it bound, or nil.
func (p *Policy) Match(req *Request) (*Rule, Params) {
	host := normalizeHost(req.Host)
	var ps Params
	for _, r := range p.Rules {
		if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
			continue
		}
		if len(r.hosts) > 0 && !hostMatches(r.hosts, host) {
			continue
		}
		for _, t := range r.paths {
			var ok bool
			if ps, ok = t.Match(req.Path.Segments, ps[:0]); ok {
				return r, ps
			}
		}
	}
	return nil, nil
}

// Claims are a verified token's claims; token.ClaimSet is one.
type Claims interface {
	Get(name string) (any, bool)
	// Map returns every claim, for CEL.
	Map() map[string]any
}

// Authorize checks the rule's owner and when clauses against verified claims. It
// returns "" to allow, or the reason to deny with a detail for logs.
func (r *Rule) Authorize(claims Claims, req *Request, ps Params) (reason.Code, string) {
	if r.Owner != nil {
		v, ok := claims.Get(r.Owner.Claim)
		claim, isString := v.(string)
		if !ok || !isString || claim == "" {
			return reason.ClaimMissing, fmt.Sprintf("token has no %s claim", r.Owner.Claim)
		}
		param, _ := ps.Get(r.Owner.Param)
		if !OwnerMatches(param, claim) {
			return reason.OwnerMismatch, fmt.Sprintf("path {%s} is not the token's %s", r.Owner.Param, r.Owner.Claim)
		}
	}
	if r.when != nil {
		ok, err := evalCondition(r.when, claims.Map(), req, ps)
		if err != nil {
			return reason.ConditionFalse, "condition error: " + err.Error()
		}
		if !ok {
			return reason.ConditionFalse, "condition is false"
		}
	}
	return "", ""
}

// OwnerMatches compares a path parameter with a claim: as UUIDs when both parse as
// UUIDs (so case and form do not matter), byte for byte otherwise. Comparing UUIDs as
// strings is the classic bug that turns a user's own upper-case link into a 403.
func OwnerMatches(param, claim string) bool {
	if param == claim {
		return true
	}
	pu, err1 := uuid.Parse(param)
	cu, err2 := uuid.Parse(claim)
	return err1 == nil && err2 == nil && pu == cu
}

func normalizeHost(h string) string {
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			return h[:i+1]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

func hostMatches(patterns []string, host string) bool {
	for _, p := range patterns {
		if p == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}
