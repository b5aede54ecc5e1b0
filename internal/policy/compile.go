package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/lestrrat-go/jwx/v2/jwa"

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
	// Hosts, when set, are the only hosts (patterns as a rule's) on which the
	// issuer's credentials are accepted: a fragment's issuer gets the hosts the
	// fragment claims. Empty: every host.
	Hosts []string
	// Fragment is the ID of the fragment that brought the issuer ("" for the
	// base policy's).
	Fragment string
}

// AcceptsHost reports whether the issuer's credentials count on host (canonical).
func (is *Issuer) AcceptsHost(host string) bool {
	return len(is.Hosts) == 0 || hostMatches(is.Hosts, host)
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
	// ScopedIssuers is true when an issuer accepts credentials on some hosts only.
	ScopedIssuers bool
	// Delegated maps a namespace to the canonical host patterns its fragments
	// may claim (Config.Fragments).
	Delegated map[string][]string
	// Fragments are what became of the fragments Compose was given, in order.
	Fragments []FragmentStatus
	// HasShadow is true when a rule is in shadow mode (see Policy.Shadows).
	HasShadow bool
	// AuthMethodHeader is set on allow to how the request authenticated (jwt,
	// session or api-key), and removed on anonymous allows.
	AuthMethodHeader string
	// HeaderSpellings are the other "_"/"-" spellings of every identity and
	// method-override header ("x_user_id", "x-user_id", …), which CGI and WSGI
	// backends read as the same header. Front doors that cannot see the request's
	// headers (Envoy's HTTP mode forwards only its allowed_headers) remove them all.
	HeaderSpellings []string

	generation uint64
}

// generations numbers compiled policies.
var generations atomic.Uint64

// Generation identifies this compiled policy among all compiled in the process
// (never 0 for one Load or Compose built), so that what was derived from it can be
// recognised without holding it.
func (p *Policy) Generation() uint64 { return p.generation }

// AuthMethodHeader names the header that says how a request authenticated.
const AuthMethodHeader = "x-auth-method"

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
	return compile(c, true)
}

// compile is Compile, with lint or without (Compose lints each part alone:
// rules of different fragments never overlap, and comparing them all pairwise
// would grow with the square of every team's rules).
func compile(c *Config, doLint bool) (*Policy, error) {
	p := &Policy{Leeway: token.DefaultLeeway, AllowPreflight: c.CORS.AllowPreflight, generation: generations.Add(1)}
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
		r.index = len(p.Rules)
		p.Rules = append(p.Rules, r)
		p.HasShadow = p.HasShadow || r.Shadow
	}
	if err := checkCredentialOwners(p.Issuers); err != nil {
		return nil, err
	}
	if p.Delegated, err = compileDelegation(c.Fragments); err != nil {
		return nil, err
	}
	p.ClaimNames, p.AllClaims = claimsUsed(p)
	// Always ours: set on every authenticated allow, removed on every other, so a
	// client's copy never reaches the backend whatever the credentials.
	p.AuthMethodHeader = AuthMethodHeader
	p.HeaderSpellings = append(p.HeaderSpellings, spellings(AuthMethodHeader)...)
	if doLint {
		p.Warnings = lint(p)
	}
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

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

func compileRule(env *cel.Env, rc RuleConfig) (*Rule, error) {
	r := &Rule{Name: rc.Name, Public: rc.Public, caseSensitive: rc.CaseSensitive}
	if rc.Name == "" {
		return nil, errors.New("name: required")
	}
	switch rc.Mode {
	case "", "enforce":
	case "shadow":
		r.Shadow = true
	default:
		return nil, fmt.Errorf("mode: %q is not enforce or shadow", rc.Mode)
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
	r.StripCredentials = rc.ForwardCredentials != nil && !*rc.ForwardCredentials
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
		if err != nil || rc.SignInURL == "" || strings.ContainsAny(rc.SignInURL, "\\\r\n") || u.RawQuery != "" && strings.Contains(u.RawQuery, "callbackURL=") ||
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
