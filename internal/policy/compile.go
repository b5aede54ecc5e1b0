package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// DefaultAction says what happens when no rule matches.
type DefaultAction uint8

// Default actions.
const (
	DefaultDeny DefaultAction = iota
	DefaultAuthenticated
)

// DefaultIdentityHeaders are used when the policy names none.
var DefaultIdentityHeaders = map[string]string{
	"x-user-id":    "sub",
	"x-user-uuid":  "uuid",
	"x-user-email": "email",
}

// Issuer is a resolved issuer: every URL filled in.
type Issuer struct {
	Issuer            string
	Audiences         []string
	JWKSURL           string
	Algorithms        []jwa.SignatureAlgorithm
	AllowInsecureJWKS bool
	RefreshInterval   time.Duration
	RefetchCooldown   time.Duration
	MaxStale          time.Duration
	// Revocation is the issuer's revocation feed, or nil.
	Revocation *Revocation
	// JWT, SessionCookie, BearerSession and APIKey say which credentials the
	// issuer's users may present; all but JWT and signed session cookies are checked
	// online, at GetSessionURL.
	JWT, SessionCookie, BearerSession, APIKey bool
	GetSessionURL                             string
	// CookiePrefix names the session cookies; TrustedOrigins may send unsafe
	// requests with them (canonical origins, scheme://host[:port]).
	CookiePrefix   string
	TrustedOrigins []string
}

// Revocation is a validated RevocationConfig, defaults applied by the consumer:
// a feed (FeedURL, SecretFile) or, when Postgres is set, Better Auth's database.
type Revocation struct {
	FeedURL, SecretFile     string
	PollInterval, MaxStale  time.Duration
	FailOpen, AllowInsecure bool
	RequireSession          bool
	// Retention bounds how long a token may live (exp - iat) to be checked.
	Retention time.Duration
	Postgres  *RevocationPostgresConfig
}

// IdentityHeader injects one claim as one header.
type IdentityHeader struct {
	Name, Claim string
}

// Policy is a compiled, immutable policy.
type Policy struct {
	Issuers        []Issuer
	Identity       []IdentityHeader
	Rules          []*Rule
	Default        DefaultAction
	AllowPreflight bool
	Leeway         time.Duration
	// ClaimNames lists every claim the policy reads (identity headers, owner and org
	// rules, requireVerifiedEmail, denyAnonymous, conditions), unless AllClaims: a
	// condition may read any claim.
	ClaimNames []string
	AllClaims  bool
	// Hash identifies the source document (first 16 hex digits of its SHA-256).
	Hash string
	// Warnings are what Lint found: legal, but likely not what the author meant.
	Warnings []string
	// AuthMethodHeader, when an issuer accepts session cookies, is set on allow to
	// how the request authenticated (jwt or session).
	AuthMethodHeader string
	// HeaderSpellings are the other "_"/"-" spellings of every identity and
	// method-override header ("x_user_id", "x-user_id", …), which CGI and WSGI
	// backends read as the same header. Front doors that cannot see the request's
	// headers (Envoy's HTTP mode forwards only its allowed_headers) remove them all.
	HeaderSpellings []string
}

// Load parses and compiles a policy document.
func Load(data []byte) (*Policy, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	p, err := Compile(c)
	if err != nil {
		return nil, err
	}
	p.Hash = Hash(data)
	return p, nil
}

// Hash identifies a policy document: the first 16 hex digits of its SHA-256.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Compile validates c and builds a Policy. Errors name the rule and field.
func Compile(c *Config) (*Policy, error) {
	p := &Policy{Leeway: token.DefaultLeeway, AllowPreflight: c.CORS.AllowPreflight}
	if c.Leeway != nil {
		if *c.Leeway < 0 || *c.Leeway > 10*time.Minute {
			return nil, fmt.Errorf("leeway: %s is outside 0..10m", *c.Leeway)
		}
		p.Leeway = *c.Leeway
	}
	if len(c.Issuers) == 0 {
		return nil, errors.New("issuers: at least one issuer is required")
	}
	seen := map[string]bool{}
	for i, ic := range c.Issuers {
		is, err := resolveIssuer(ic)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		if seen[is.Issuer] {
			return nil, fmt.Errorf("issuers[%d]: issuer %q is listed twice", i, is.Issuer)
		}
		seen[is.Issuer] = true
		p.Issuers = append(p.Issuers, is)
	}

	var err error
	if p.Identity, p.HeaderSpellings, err = compileIdentity(c.Identity); err != nil {
		return nil, err
	}

	switch c.Default {
	case "", "deny":
		p.Default = DefaultDeny
	case "authenticated":
		p.Default = DefaultAuthenticated
	default:
		return nil, fmt.Errorf("default: %q is not deny or authenticated", c.Default)
	}

	env, err := newCELEnv()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i, rc := range c.Rules {
		r, err := compileRule(env, rc)
		if err != nil {
			return nil, fmt.Errorf("rules[%d] %q: %w", i, rc.Name, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("rules[%d] %q: name: used by an earlier rule", i, rc.Name)
		}
		names[r.Name] = true
		p.Rules = append(p.Rules, r)
	}
	if err := checkCredentialOwners(p.Issuers); err != nil {
		return nil, err
	}
	p.ClaimNames, p.AllClaims = claimsUsed(p)
	if p.AnySessionCookie() || p.OnlineIssuer(CredentialBearerSession) != nil || p.OnlineIssuer(CredentialAPIKey) != nil {
		p.AuthMethodHeader = "x-auth-method"
	}
	p.Warnings = lint(p)
	return p, nil
}

func claimsUsed(p *Policy) ([]string, bool) {
	var names []string
	all := false
	for _, h := range p.Identity {
		names = append(names, h.Claim)
	}
	for _, r := range p.Rules {
		if r.Owner != nil {
			names = append(names, r.Owner.Claim)
		}
		if r.Org != nil {
			names = append(names, r.Org.Claim)
		}
		if r.RequireVerifiedEmail {
			names = append(names, "emailVerified")
		}
		if r.DenyAnonymous {
			names = append(names, "isAnonymous")
		}
		names = append(names, r.whenClaims...)
		all = all || r.whenAnyClaim
	}
	slices.Sort(names)
	return slices.Compact(names), all
}

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

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

func compileRule(env *cel.Env, rc RuleConfig) (*Rule, error) {
	r := &Rule{Name: rc.Name, Public: rc.Public, caseSensitive: rc.CaseSensitive}
	if rc.Name == "" {
		return nil, errors.New("name: required")
	}
	for _, m := range rc.Methods {
		if !slices.Contains(knownMethods, m) {
			return nil, fmt.Errorf("methods: %q is not an upper-case HTTP method", m)
		}
		r.methods = append(r.methods, m)
	}
	// Starlette, Flask, Rails and Express answer HEAD with the GET handler, so a rule
	// for GET judges HEAD too.
	if slices.Contains(r.methods, "GET") && !slices.Contains(r.methods, "HEAD") {
		r.methods = append(r.methods, "HEAD")
	}
	for _, h := range rc.Hosts {
		c, err := compileHostPattern(h)
		if err != nil {
			return nil, fmt.Errorf("hosts: %w", err)
		}
		r.hosts = append(r.hosts, c)
	}
	if len(rc.Paths) == 0 {
		return nil, errors.New("paths: at least one path template is required")
	}
	for _, raw := range rc.Paths {
		t, err := ParseTemplate(raw, rc.CaseSensitive)
		if err != nil {
			return nil, fmt.Errorf("paths: %w", err)
		}
		// Only rules that restrict take /x.json for /x: a public rule must not open
		// what is, outside Rails, a different resource.
		t.formatSuffix = !rc.Public
		r.paths = append(r.paths, t)
	}
	if rc.Public && (rc.Owner != nil || rc.Org != nil || rc.When != "" || rc.RequireVerifiedEmail || rc.DenyAnonymous || rc.MaxTokenAge != nil || rc.OnUnauthenticated != "") {
		return nil, errors.New("public: a public rule needs no token, so it cannot also have owner, org, when, requireVerifiedEmail, denyAnonymous or maxTokenAge")
	}
	if rc.Owner != nil {
		if rc.Owner.Param == "" || rc.Owner.Claim == "" {
			return nil, errors.New("owner: param and claim are both required")
		}
		if err := allBind(r.paths, "owner.param", rc.Owner.Param); err != nil {
			return nil, err
		}
		o := *rc.Owner
		r.Owner = &o
	}
	if err := compileAccountChecks(r, rc); err != nil {
		return nil, err
	}
	if rc.When != "" {
		prg, claims, anyClaim, err := compileCondition(env, rc.When)
		if err != nil {
			return nil, fmt.Errorf("when: %w", err)
		}
		r.when, r.whenClaims, r.whenAnyClaim = prg, claims, anyClaim
		r.When = rc.When
	}
	return r, nil
}

func allBind(paths []*Template, field, param string) error {
	for _, t := range paths {
		if !t.Binds(param) {
			return fmt.Errorf("%s: path %q does not bind {%s}", field, t, param)
		}
	}
	return nil
}

// compileAccountChecks validates the rule's Better Auth account checks: org
// membership, verified email, anonymous users, token age.
func compileAccountChecks(r *Rule, rc RuleConfig) error {
	r.RequireVerifiedEmail, r.DenyAnonymous = rc.RequireVerifiedEmail, rc.DenyAnonymous
	if rc.MaxTokenAge != nil {
		if *rc.MaxTokenAge <= 0 {
			return errors.New("maxTokenAge: must be positive")
		}
		r.MaxTokenAge = *rc.MaxTokenAge
	}
	switch rc.OnUnauthenticated {
	case "":
		if rc.SignInURL != "" {
			return errors.New("signInURL: set onUnauthenticated: redirect to use it")
		}
	case "redirect":
		u, err := url.Parse(rc.SignInURL)
		if err != nil || rc.SignInURL == "" || u.RawQuery != "" && strings.Contains(u.RawQuery, "callbackURL=") ||
			!(u.IsAbs() && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" || !u.IsAbs() && strings.HasPrefix(rc.SignInURL, "/") && !strings.HasPrefix(rc.SignInURL, "//")) {
			return errors.New("signInURL: an absolute http(s) URL or a path starting with one /, without a callbackURL parameter")
		}
		r.SignInURL = rc.SignInURL
	default:
		return fmt.Errorf("onUnauthenticated: %q is not redirect", rc.OnUnauthenticated)
	}
	if rc.Org == nil {
		return nil
	}
	o := *rc.Org
	if o.Param == "" {
		return errors.New("org.param: required")
	}
	if o.Claim == "" {
		o.Claim = "orgs"
	}
	if err := allBind(r.paths, "org.param", o.Param); err != nil {
		return err
	}
	for _, role := range o.Roles {
		if role == "" || strings.ContainsAny(role, ", ") {
			return fmt.Errorf("org.roles: %q is not one role", role)
		}
	}
	r.Org = &o
	return nil
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
