package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

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
	// Org, when set, requires membership of the organization a parameter names.
	Org *OrgConfig
	// RequireVerifiedEmail and DenyAnonymous refuse unverified and anonymous users.
	RequireVerifiedEmail, DenyAnonymous bool
	// MaxTokenAge, when positive, bounds now - iat (the engine checks it).
	MaxTokenAge time.Duration
	// SignInURL, when set, is where unauthenticated browser navigations go.
	SignInURL string
	// StripCredentials keeps credentials from the backend (forwardCredentials: false).
	StripCredentials bool
	// When is the CEL condition as written ("" when none).
	When string
	// Shadow rules never decide: see RuleConfig.Mode.
	Shadow bool

	methods       []string
	hosts         []string
	paths         []*Template
	caseSensitive bool
	when          cel.Program
	// whenClaims are the claims `when` reads; whenAnyClaim: it may read any.
	whenClaims   []string
	whenAnyClaim bool
	index        int
}

// Index is the rule's position in its policy's Rules.
func (r *Rule) Index() int { return r.index }

// Request is what a rule is matched against, every part already canonical.
type Request struct {
	// Method passed CheckMethod.
	Method string
	// Host is CanonicalHost's output.
	Host string
	Path Path
}

// Match returns the first enforcing rule matching req, with the parameters it
// bound, or nil. Shadow rules are skipped: see Shadows.
func (p *Policy) Match(req *Request) (*Rule, Params) { return p.MatchTo(req, nil) }

// MatchTo is Match binding the parameters into buf's storage (buf[:0]), so that a
// caller with a buffer on its stack matches without allocating.
func (p *Policy) MatchTo(req *Request, buf Params) (*Rule, Params) {
	ps := buf[:0]
	for _, r := range p.Rules {
		if r.Shadow {
			continue
		}
		var ok bool
		// ps is one buffer for every rule tried, as Template.Match hands it back.
		if ps, ok = r.match(req, ps[:0]); ok {
			return r, ps
		}
	}
	return nil, nil
}

// ShadowMatch is a shadow rule that would have decided a request, with the
// parameters it bound.
type ShadowMatch struct {
	Rule   *Rule
	Params Params
}

// Shadows returns the shadow rules that would decide req if they were enforced:
// those that match it before decider (the enforcing rule Match returned; nil
// when none matched, and every matching shadow rule counts). It allocates only
// when one matches, and policies without shadow rules (HasShadow false) need
// not call it.
func (p *Policy) Shadows(req *Request, decider *Rule) []ShadowMatch {
	var out []ShadowMatch
	for _, r := range p.Rules {
		if r == decider {
			break
		}
		if !r.Shadow {
			continue
		}
		if ps, ok := r.match(req, nil); ok {
			out = append(out, ShadowMatch{Rule: r, Params: ps})
		}
	}
	return out
}

func (r *Rule) match(req *Request, ps Params) (Params, bool) {
	if len(r.methods) > 0 && !slices.Contains(r.methods, req.Method) {
		return ps, false
	}
	if len(r.hosts) > 0 && !hostMatches(r.hosts, req.Host) {
		return ps, false
	}
	for _, t := range r.paths {
		var ok bool
		if ps, ok = t.Match(req.Path.Segments, ps[:0]); ok {
			return ps, true
		}
	}
	return ps, false
}

// ClaimSource reads a verified token's claims; token.ClaimSet is one.
type ClaimSource interface {
	Get(name string) (any, bool)
	// String returns the named claim when it is a string, without allocating:
	// the owner check runs on every request.
	String(name string) (string, bool)
	// Map returns every claim, for CEL.
	Map() map[string]any
}

// Authorize checks the rule's owner and when clauses against verified claims. It
// returns "" to allow, or the reason to deny with a detail for logs.
func (r *Rule) Authorize(claims ClaimSource, req *Request, ps Params) (reason.Code, string) {
	if r.Owner != nil {
		claim, ok := claims.String(r.Owner.Claim)
		if !ok || claim == "" {
			return reason.ClaimMissing, fmt.Sprintf("token has no %s claim", r.Owner.Claim)
		}
		param, _ := ps.Get(r.Owner.Param)
		if !OwnerMatches(param, claim) {
			return reason.OwnerMismatch, fmt.Sprintf("path {%s} is not the token's %s", r.Owner.Param, r.Owner.Claim)
		}
	}
	if r.RequireVerifiedEmail {
		if v, _ := claims.Get("emailVerified"); v != true {
			return reason.EmailUnverified, "emailVerified is not true"
		}
	}
	if r.DenyAnonymous {
		if v, _ := claims.Get("isAnonymous"); v == true {
			return reason.AnonymousDenied, "isAnonymous is true"
		}
	}
	if r.Org != nil {
		param, _ := ps.Get(r.Org.Param)
		if code, detail := orgMember(claims, r.Org, param); code != "" {
			return code, detail
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

// orgMember checks that the organization param names is a key of the org claim
// (compared as OwnerMatches compares), with one of the wanted roles if any.
func orgMember(claims ClaimSource, o *OrgConfig, param string) (reason.Code, string) {
	v, _ := claims.Get(o.Claim)
	orgs, ok := v.(map[string]any)
	if !ok {
		return reason.ClaimMissing, fmt.Sprintf("token has no %s object", o.Claim)
	}
	for id, roles := range orgs {
		if !OwnerMatches(param, id) {
			continue
		}
		if len(o.Roles) == 0 {
			return "", ""
		}
		for _, have := range SplitRoles(roles) {
			if slices.Contains(o.Roles, have) {
				return "", ""
			}
		}
		return reason.NotMember, fmt.Sprintf("member of {%s} without a role the rule wants", o.Param)
	}
	return reason.NotMember, fmt.Sprintf("not a member of the organization {%s}", o.Param)
}

// SplitRoles reads Better Auth's roles: a string of comma-joined roles ("admin,user",
// as the admin and organization plugins store several), or a list of strings.
// Spaces around a role are dropped, and so are empty ones.
func SplitRoles(v any) []string {
	var raw []string
	switch t := v.(type) {
	case string:
		raw = strings.Split(t, ",")
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok {
				raw = append(raw, s)
			}
		}
	}
	out := raw[:0]
	for _, r := range raw {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
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
