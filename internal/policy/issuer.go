package policy

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

func resolveIssuer(ic IssuerConfig) (Issuer, error) {
	is := Issuer{
		Issuer:            ic.Issuer,
		Audiences:         ic.Audiences,
		JWKSURL:           ic.JWKSURL,
		AllowInsecureJWKS: ic.AllowInsecureJWKS,
		RefreshInterval:   ic.RefreshInterval,
		RefetchCooldown:   ic.RefetchCooldown,
		MaxStale:          ic.MaxStale,
	}
	if ic.BetterAuthURL != "" {
		u, err := url.Parse(ic.BetterAuthURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return is, fmt.Errorf("betterAuthURL: %q is not an absolute http(s) URL", jwksurl.Redact(ic.BetterAuthURL))
		}
		// Better Auth's jwt plugin defaults iss and aud to the ORIGIN of baseURL.
		origin := u.Scheme + "://" + u.Host
		if is.Issuer == "" {
			is.Issuer = origin
		}
		if len(is.Audiences) == 0 {
			is.Audiences = []string{origin}
		}
		if is.JWKSURL == "" {
			base := strings.TrimRight(u.Path, "/")
			if !strings.HasSuffix(base, "/api/auth") {
				base += "/api/auth"
			}
			is.JWKSURL = origin + base + "/jwks"
		}
	}
	if is.Issuer == "" {
		return is, errors.New("issuer: set betterAuthURL or issuer")
	}
	if len(is.Audiences) == 0 {
		return is, errors.New("audiences: at least one audience is required")
	}
	if slices.Contains(is.Audiences, "") {
		return is, errors.New("audiences: empty audience")
	}
	if is.JWKSURL == "" {
		return is, errors.New("jwksURL: set betterAuthURL or jwksURL")
	}
	if err := resolveCredentials(&is, ic); err != nil {
		return is, err
	}
	if ic.Revocation != nil {
		r, err := resolveRevocation(*ic.Revocation, ic.BetterAuthURL)
		if err != nil {
			return is, fmt.Errorf("revocation.%w", err)
		}
		is.Revocation = r
	}
	if err := jwksurl.Check(is.JWKSURL, is.AllowInsecureJWKS); err != nil {
		return is, fmt.Errorf("jwksURL: %w", err)
	}
	if len(ic.Algorithms) == 0 {
		is.Algorithms = token.DefaultAlgorithms
	}
	for _, a := range ic.Algorithms {
		alg := jwa.SignatureAlgorithm(a)
		if !slices.Contains(token.Supported, alg) {
			return is, fmt.Errorf("algorithms: %q is not supported (none and HS* never are)", a)
		}
		is.Algorithms = append(is.Algorithms, alg)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"refreshInterval", is.RefreshInterval}, {"refetchCooldown", is.RefetchCooldown}, {"maxStale", is.MaxStale}} {
		if d.v < 0 {
			return is, fmt.Errorf("%s: must not be negative", d.name)
		}
	}
	return is, nil
}

func resolveRevocation(rc RevocationConfig, betterAuthURL string) (*Revocation, error) {
	r := &Revocation{FeedURL: rc.FeedURL, SecretFile: rc.SecretFile, PollInterval: rc.PollInterval, MaxStale: rc.MaxStale,
		FailOpen: rc.FailOpen, AllowInsecure: rc.AllowInsecure, RequireSession: rc.RequireSession == nil || *rc.RequireSession,
		Retention: rc.Retention}
	switch {
	case r.Retention < 0:
		return nil, errors.New("retention: must not be negative")
	case r.Retention == 0:
		r.Retention = time.Hour
	}
	if rc.Postgres != nil {
		if rc.FeedURL != "" || rc.SecretFile != "" || rc.PollInterval != 0 || rc.MaxStale != 0 {
			return nil, errors.New("postgres: a database or a feed, not both (feedURL, secretFile, pollInterval and maxStale are the feed's)")
		}
		if rc.Postgres.DSNFile == "" {
			return nil, errors.New("postgres.dsnFile: required")
		}
		pg := *rc.Postgres
		r.Postgres = &pg
		return r, nil
	}
	if r.FeedURL == "" && betterAuthURL != "" {
		u, err := url.Parse(betterAuthURL)
		if err == nil {
			base := strings.TrimRight(u.Path, "/")
			if !strings.HasSuffix(base, "/api/auth") {
				base += "/api/auth"
			}
			r.FeedURL = u.Scheme + "://" + u.Host + base + "/extauthz/revocations"
		}
	}
	switch {
	case r.FeedURL == "":
		return nil, errors.New("feedURL: set it, or betterAuthURL")
	case r.SecretFile == "":
		return nil, errors.New("secretFile: required (the secret shared with the Better Auth plugin)")
	case r.PollInterval < 0 || r.MaxStale < 0:
		return nil, errors.New("pollInterval, maxStale: must not be negative")
	case r.MaxStale > 0 && r.PollInterval > 0 && r.MaxStale < 2*r.PollInterval:
		return nil, errors.New("maxStale: must be at least two poll intervals")
	}
	if err := jwksurl.Check(r.FeedURL, r.AllowInsecure); err != nil {
		return nil, fmt.Errorf("feedURL: %w", err)
	}
	return r, nil
}

// AnySessionCookie reports whether an issuer accepts session cookies.
func (p *Policy) AnySessionCookie() bool {
	for _, is := range p.Issuers {
		if is.SessionCookie {
			return true
		}
	}
	return false
}

// OriginOf is the canonical origin of an Origin header or a Referer URL (its
// path, query and fragment dropped).
func OriginOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", "", "", false
	return CanonicalOrigin(u.String())
}

// Credential kinds an issuer may accept.
const (
	CredentialJWT           = "jwt"
	CredentialSessionCookie = "sessionCookie"
	CredentialBearerSession = "bearerSession"
	CredentialAPIKey        = "apiKey"
)

func resolveCredentials(is *Issuer, ic IssuerConfig) error {
	creds := ic.Credentials
	if len(creds) == 0 {
		creds = []string{CredentialJWT}
	}
	for _, c := range creds {
		switch c {
		case CredentialJWT:
			is.JWT = true
		case CredentialSessionCookie:
			is.SessionCookie = true
		case CredentialBearerSession:
			is.BearerSession = true
		case CredentialAPIKey:
			is.APIKey = true
		default:
			return fmt.Errorf("credentials: %q is not jwt, sessionCookie, bearerSession or apiKey", c)
		}
	}
	if (is.SessionCookie || is.BearerSession || is.APIKey) && ic.BetterAuthURL != "" {
		u, err := url.Parse(ic.BetterAuthURL)
		if err == nil {
			base := strings.TrimRight(u.Path, "/")
			if !strings.HasSuffix(base, "/api/auth") {
				base += "/api/auth"
			}
			is.GetSessionURL = u.Scheme + "://" + u.Host + base + "/get-session?disableCookieCache=true&disableRefresh=true"
		}
	}
	if (is.BearerSession || is.APIKey) && is.GetSessionURL == "" {
		return errors.New("credentials: bearerSession and apiKey are checked at <betterAuthURL>/api/auth/get-session: set betterAuthURL")
	}
	is.CookiePrefix = ic.CookiePrefix
	if is.CookiePrefix == "" {
		is.CookiePrefix = "better-auth"
	}
	origins := ic.TrustedOrigins
	if len(origins) == 0 {
		origins = []string{is.Issuer}
	}
	for _, o := range origins {
		c, err := CanonicalOrigin(o)
		if err != nil {
			return fmt.Errorf("trustedOrigins: %w", err)
		}
		is.TrustedOrigins = append(is.TrustedOrigins, c)
	}
	return nil
}

// CanonicalOrigin returns scheme://host[:port] in lower case, without a default
// port, or an error for anything that is not an http(s) origin (a path, a query,
// userinfo).
func CanonicalOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an http(s) origin", jwksurl.Redact(raw))
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return strings.ToLower(u.Scheme) + "://" + host, nil
}

// checkCredentialOwners: a bearer-plugin token, an API key and a session cookie do
// not say which Better Auth issued them, so each kind (each cookie prefix) may
// belong to one issuer only.
func checkCredentialOwners(issuers []Issuer) error {
	var bearer, key string
	cookies := map[string]string{}
	for _, is := range issuers {
		if is.BearerSession {
			if bearer != "" {
				return fmt.Errorf("issuers: bearerSession for both %s and %s: a bearer-plugin token does not say which", bearer, is.Issuer)
			}
			bearer = is.Issuer
		}
		if is.APIKey {
			if key != "" {
				return fmt.Errorf("issuers: apiKey for both %s and %s: an API key does not say which", key, is.Issuer)
			}
			key = is.Issuer
		}
		if is.SessionCookie {
			if other, dup := cookies[is.CookiePrefix]; dup {
				return fmt.Errorf("issuers: session cookies named %s for both %s and %s: set cookiePrefix", is.CookiePrefix, other, is.Issuer)
			}
			cookies[is.CookiePrefix] = is.Issuer
		}
	}
	return nil
}

// OnlineIssuer returns the issuer that accepts the given online credential kind
// (bearerSession, apiKey), or nil.
func (p *Policy) OnlineIssuer(kind string) *Issuer {
	for i := range p.Issuers {
		is := &p.Issuers[i]
		if kind == CredentialBearerSession && is.BearerSession || kind == CredentialAPIKey && is.APIKey {
			return is
		}
	}
	return nil
}
