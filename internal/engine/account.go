package engine

import (
	"math"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// RevocationChecker says whether a verified token was revoked since it was issued:
// "" when not, else the reason. *revocation.Feed and *revocation.Postgres are.
type RevocationChecker interface {
	// Check is given the token's sid (may be empty), sub, iat and exp.
	Check(sid, user string, iat, exp time.Time) (reason.Code, string)
}

// checkAccount applies what Better Auth says about the account behind a verified
// token, whatever rule matched (rule is nil under default: authenticated): a
// banned user is refused until banExpires, a revoked session or user is refused
// (checked on every request, cached verification or not), and the rule's
// maxTokenAge bounds how long ago the token was issued.
func (s *Snapshot) checkAccount(c *token.Claims, rule *policy.Rule, method string) (reason.Code, string) {
	now := s.now()
	if banned, detail := bannedAt(&c.Values, now); banned {
		return reason.UserBanned, detail
	}
	// A credential checked online was just confirmed by Better Auth itself.
	if rc := s.Revocations[c.Issuer]; rc != nil && !onlineMethod(method) {
		if is := s.issuer(c.Issuer); is != nil && is.Revocation != nil && is.Revocation.Postgres == nil &&
			(c.IssuedAt().IsZero() || c.Expiry().Sub(c.IssuedAt()) > is.Revocation.Retention) {
			// The feed forgets revocations after its retention: a token that lives
			// longer could outlive the memory of its own sign-out.
			return reason.RevocationUnavailable, "the token lives longer than the revocation feed's retention (" + is.Revocation.Retention.String() + ")"
		}
		sidStr, _ := c.Values.String("sid")
		if sidStr == "" && s.requiresSession(c.Issuer) {
			return reason.ClaimMissing, "token has no sid claim, and the issuer's revocation feed needs one (add session.id in definePayload)"
		}
		if code, detail := rc.Check(sidStr, c.Subject, c.IssuedAt(), c.Expiry()); code != "" {
			return code, detail
		}
	}
	if rule != nil && rule.MaxTokenAge > 0 {
		if c.IssuedAt().IsZero() {
			return reason.TokenTooOld, "token has no iat, and the rule has maxTokenAge"
		}
		if age := now.Sub(c.IssuedAt()); age > rule.MaxTokenAge {
			return reason.TokenTooOld, "token issued " + age.Round(time.Second).String() + " ago, over the rule's maxTokenAge " + rule.MaxTokenAge.String()
		}
	}
	return "", ""
}

func (s *Snapshot) requiresSession(issuer string) bool {
	for _, is := range s.Policy.Issuers {
		if is.Issuer == issuer {
			return is.Revocation != nil && is.Revocation.RequireSession
		}
	}
	return true
}

func (s *Snapshot) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// bannedAt reads the admin plugin's ban: banned true, and banExpires absent, null,
// or later than now. Better Auth writes banExpires as a JSON date string; a number
// is taken as Unix seconds (milliseconds when it is that large). A banExpires that
// cannot be read keeps the ban.
func bannedAt(c *token.ClaimSet, now time.Time) (bool, string) {
	if v, _ := c.Get("banned"); v != true {
		return false, ""
	}
	exp, _ := c.Get("banExpires")
	var until time.Time
	switch t := exp.(type) {
	case nil:
		return true, "the token says the user is banned"
	case string:
		var err error
		if until, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return true, "the token says the user is banned (banExpires unreadable)"
		}
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return true, "the token says the user is banned (banExpires unreadable)"
		}
		if t > 1e11 {
			until = time.UnixMilli(int64(t))
		} else {
			until = time.Unix(int64(t), 0)
		}
	default:
		return true, "the token says the user is banned (banExpires unreadable)"
	}
	if now.Before(until) {
		return true, "the token says the user is banned until " + until.UTC().Format(time.RFC3339)
	}
	return false, ""
}
