package policy

import (
	"fmt"
	"slices"

	"github.com/google/cel-go/cel"

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

	methods       []string
	hosts         []string
	paths         []*Template
	caseSensitive bool
	when          cel.Program
	// whenClaims are the claims `when` reads; whenAnyClaim: it may read any.
	whenClaims   []string
	whenAnyClaim bool
}

// Request is what a rule is matched against, every part already canonical.
type Request struct {
	// Method passed CheckMethod.
	Method string
	// Host is CanonicalHost's output.
	Host string
	Path Path
}

// Match returns the first rule matching req, with the parameters it bound, or nil.
func (p *Policy) Match(req *Request) (*Rule, Params) {
	var ps Params
	for _, r := range p.Rules {
		if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
			continue
		}
		if len(r.hosts) > 0 && !hostMatches(r.hosts, req.Host) {
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

// ClaimSource reads a verified token's claims; token.ClaimSet is one.
type ClaimSource interface {
	Get(name string) (any, bool)
	// Map returns every claim, for CEL.
	Map() map[string]any
}

// Authorize checks the rule's owner and when clauses against verified claims. It
// returns "" to allow, or the reason to deny with a detail for logs.
func (r *Rule) Authorize(claims ClaimSource, req *Request, ps Params) (reason.Code, string) {
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
		ok, err := evalCondition(r.when, claims.Map(), req, ps, r.caseSensitive)
		if err != nil {
			return reason.ConditionFalse, "condition error: " + err.Error()
		}
		if !ok {
			return reason.ConditionFalse, "condition is false"
		}
	}
	return "", ""
}

// OwnerMatches compares a path parameter with a claim. Two UUIDs in the canonical
// 36-character hyphenated form compare case-insensitively (an upper-case link to
// one's own tasks must not be a 403); anything else compares byte for byte, so
// "{uuid}", "urn:uuid:…", a UUID without hyphens or with junk around it never
// matches a claim written canonically.
func OwnerMatches(param, claim string) bool {
	if param == claim {
		return true
	}
	return isCanonicalUUID(param) && isCanonicalUUID(claim) && asciiEqualFold(param, claim)
}

// isCanonicalUUID accepts exactly 8-4-4-4-12 hex digits. It is written here because
// google/uuid's Parse also accepts the braced, urn: and hyphen-less forms, which
// backends may or may not treat as the same id.
func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}
