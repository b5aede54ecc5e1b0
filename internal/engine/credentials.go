package engine

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/online"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/sessioncookie"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// How a request authenticated, as the x-auth-method header says.
const (
	MethodJWT     = "jwt"
	MethodSession = "session"
	MethodAPIKey  = "api-key"

	// Internal distinctions of a session: checked online (its cookie, or the
	// bearer plugin's token). x-auth-method says "session" for both.
	methodOnlineCookie = "session-online-cookie"
	methodOnlineBearer = "session-online-bearer"
)

func methodName(m string) string {
	if m == methodOnlineCookie || m == methodOnlineBearer {
		return MethodSession
	}
	return m
}

func onlineMethod(m string) bool {
	return m == methodOnlineCookie || m == methodOnlineBearer || m == MethodAPIKey
}

// noOnline marks the context of a shadow rule's evaluation: it never calls
// get-session, so that a rule that does not decide adds no outbound call and no
// latency (a shadow rule before a public one would otherwise check every API key
// online).
type noOnline struct{}

// errOnlineSkipped is what a shadow rule gets for a credential only Better Auth
// can check: its would-be decision is unknown.
var errOnlineSkipped = errors.New("the credential is checked online, which a shadow rule does not do")

// checkOnline verifies a credential at its issuer's get-session.
func (s *Snapshot) checkOnline(ctx context.Context, is *policy.Issuer, c online.Credential, method string) (*token.Claims, string, error) {
	if ctx.Value(noOnline{}) != nil {
		return nil, "", errOnlineSkipped
	}
	v := s.Online[is.Issuer]
	if v == nil {
		return nil, "", reason.Errorf(reason.SessionUnavailable, "no get-session check for %s", is.Issuer)
	}
	sess, err := v.Check(ctx, c)
	if err != nil {
		return nil, "", err
	}
	return token.ClaimsOf(is.Issuer, sess.Claims, sess.ExpiresAt), method, nil
}

// authenticate verifies the request's credential: a Bearer JWT when there is an
// Authorization header, else Better Auth's session cookies for the issuers that
// accept them. Each must be a kind its issuer accepts.
func (s *Snapshot) authenticate(ctx context.Context, req *Request) (*token.Claims, string, error) {
	if req.APIKey != "" && len(req.Authorization) == 0 {
		if is := s.Policy.OnlineIssuer(policy.CredentialAPIKey); is != nil {
			return s.checkOnline(ctx, is, online.Credential{Kind: online.APIKey, Value: req.APIKey, ForwardedFor: req.ClientAddress}, MethodAPIKey)
		}
	}
	if len(req.Authorization) > 0 || !s.Policy.AnySessionCookie() {
		// The bearer plugin's token is "<token>.<signature>": two parts, where a
		// JWT has three.
		if is := s.Policy.OnlineIssuer(policy.CredentialBearerSession); is != nil {
			if raw, ok := token.SessionFromAuthorization(req.Authorization); ok {
				return s.checkOnline(ctx, is, online.Credential{Kind: online.BearerSession, Value: raw, ForwardedFor: req.ClientAddress}, methodOnlineBearer)
			}
		}
		raw, err := token.FromAuthorization(req.Authorization)
		if err != nil {
			return nil, "", err
		}
		c, err := s.Verifier.Verify(ctx, raw)
		if err != nil {
			return nil, "", err
		}
		if is := s.issuer(c.Issuer); is == nil || !is.JWT {
			return nil, "", reason.Errorf(reason.CredentialNotAccepted, "%s does not accept JWTs here (credentials)", c.Issuer)
		}
		return c, MethodJWT, nil
	}
	for i := range s.Policy.Issuers {
		is := &s.Policy.Issuers[i]
		if !is.SessionCookie {
			continue
		}
		prefix := is.CookiePrefix
		cookies, err := sessioncookie.Parse(req.Cookies, prefix, strings.HasPrefix(is.Issuer, "https://"))
		if err != nil {
			return nil, "", reason.Wrap(reason.TokenMalformed, "session cookies", err)
		}
		switch {
		case cookies.Data != "":
			c, err := s.Verifier.VerifyCookieCache(ctx, cookies.Data, cookies.Token)
			if err != nil {
				return nil, "", err
			}
			if is := s.issuer(c.Issuer); is == nil || !is.SessionCookie || is.CookiePrefix != prefix {
				return nil, "", reason.Errorf(reason.CredentialNotAccepted, "%s does not accept these session cookies (credentials, cookiePrefix)", c.Issuer)
			}
			return c, MethodSession, nil
		case cookies.Token != "":
			// No signed cache: ask Better Auth.
			return s.checkOnline(ctx, is, online.Credential{Kind: online.SessionCookie, CookieName: cookies.TokenName,
				Value: cookies.TokenValue, ForwardedFor: req.ClientAddress}, methodOnlineCookie)
		}
	}
	return nil, "", reason.Errorf(reason.TokenMissing, "no Authorization header and no session cookie")
}

// checkIssuerHost refuses a token of a fragment's issuer on a host the fragment
// does not claim: a team's own Better Auth must not sign its way into another
// team's hosts.
func (s *Snapshot) checkIssuerHost(iss, host string) (reason.Code, string) {
	if !s.Policy.ScopedIssuers {
		return "", ""
	}
	if is := s.issuer(iss); is != nil && !is.AcceptsHost(host) {
		return reason.IssuerMismatch, "the issuer is a fragment's, and this host is not one the fragment claims"
	}
	return "", ""
}

func (s *Snapshot) issuer(name string) *policy.Issuer {
	for i := range s.Policy.Issuers {
		if s.Policy.Issuers[i].Issuer == name {
			return &s.Policy.Issuers[i]
		}
	}
	return nil
}

// checkOrigin is the CSRF check of a cookie-authenticated request: a browser sends
// cookies with a cross-site form POST, so an unsafe method needs an Origin (or,
// without one, a Referer) that the issuer trusts.
func (s *Snapshot) checkOrigin(issuer string, req *Request) (reason.Code, string) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return "", ""
	}
	// A Referer stands in only for a missing Origin: "Origin: null" (a sandboxed
	// frame, a cross-origin redirect) is an answer, and not a trusted one.
	origin := req.Origin
	if origin == "" {
		origin = req.Referer
	}
	if origin == "" || origin == "null" {
		return reason.CSRFOriginMismatch, "a cookie-authenticated " + req.Method + " without Origin or Referer"
	}
	o, err := policy.OriginOf(origin)
	is := s.issuer(issuer)
	if err != nil || is == nil || !slices.Contains(is.TrustedOrigins, o) {
		return reason.CSRFOriginMismatch, "a cookie-authenticated " + req.Method + " from an origin the issuer does not trust"
	}
	return "", ""
}

// stripCredentials removes the Authorization header and x-api-key, and rewrites
// Cookie without Better Auth's cookies (all of them, when nothing else is left).
func stripCredentials(p *policy.Policy, req *Request, set []Header, remove []string) ([]Header, []string) {
	remove = append(remove, "authorization", "x-api-key")
	prefixes := []string{sessioncookie.DefaultPrefix}
	for _, is := range p.Issuers {
		if !slices.Contains(prefixes, is.CookiePrefix) {
			prefixes = append(prefixes, is.CookiePrefix)
		}
	}
	var kept []string
	for _, h := range req.Cookies {
		for _, pair := range strings.Split(h, ";") {
			pair = strings.TrimSpace(pair)
			name, _, _ := strings.Cut(pair, "=")
			name = strings.TrimPrefix(name, "__Secure-")
			ours := false
			for _, pre := range prefixes {
				if strings.HasPrefix(name, pre+".") {
					ours = true
				}
			}
			if pair != "" && !ours {
				kept = append(kept, pair)
			}
		}
	}
	if len(req.Cookies) > 0 {
		if len(kept) == 0 {
			remove = append(remove, "cookie")
		} else {
			set = append(set, Header{Name: "cookie", Value: strings.Join(kept, "; ")})
		}
	}
	return set, remove
}
