// Package policy parses, validates and compiles the authorization policy.
//
// A policy is one YAML document (a file or a ConfigMap key). Compile turns it into an
// immutable *Policy that many goroutines read at once; a new policy is a new value,
// never an edit of the old one.
package policy

//go:generate go run ./schemagen -o schema.json -values-schema ../../deploy/helm/extauthz/values.schema.json

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the policy document as written by an operator.
type Config struct {
	// Issuers whose tokens are accepted. At least one.
	Issuers []IssuerConfig `yaml:"issuers" jsonschema:"required,minItems=1"`
	// Identity configures the headers injected on allow.
	Identity IdentityConfig `yaml:"identity"`
	// Rules are tried in order; the first that matches decides.
	Rules []RuleConfig `yaml:"rules"`
	// Default applies when no rule matches: "deny" (the default) or "authenticated".
	Default string `yaml:"default" jsonschema:"enum=,enum=deny,enum=authenticated"`
	// CORS configures preflight handling.
	CORS CORSConfig `yaml:"cors"`
	// Leeway is the allowed clock skew for exp/nbf/iat (default 30s).
	Leeway *time.Duration `yaml:"leeway"`
	// Fragments delegates hosts to namespaces: namespace → the host patterns
	// (exact or "*.suffix") its policy fragments may claim. A namespace not
	// listed may claim none, and no two namespaces may be given overlapping hosts.
	Fragments map[string][]string `yaml:"fragments"`
}

// IssuerConfig is one Better Auth deployment.
type IssuerConfig struct {
	// BetterAuthURL is Better Auth's baseURL. Its origin becomes the issuer and the
	// audience, and <url>/api/auth/jwks the JWKS URL, unless those are set explicitly.
	BetterAuthURL string `yaml:"betterAuthURL" jsonschema:"pattern=^https?://"`
	// Issuer is the exact iss claim.
	Issuer string `yaml:"issuer"`
	// Audiences: the token's aud must contain one of them.
	Audiences []string `yaml:"audiences"`
	// JWKSURL is where the public keys are published.
	JWKSURL string `yaml:"jwksURL" jsonschema:"pattern=^https?://"`
	// Algorithms allowed (default EdDSA, ES256, ES512, RS256, PS256).
	Algorithms []string `yaml:"algorithms" jsonschema:"enum=EdDSA,enum=ES256,enum=ES384,enum=ES512,enum=RS256,enum=RS384,enum=RS512,enum=PS256,enum=PS384,enum=PS512"`
	// AllowInsecureJWKS accepts a plain-http JWKS URL on a non-loopback host.
	AllowInsecureJWKS bool `yaml:"allowInsecureJWKS"`
	// RefreshInterval between background JWKS refreshes (default 5m).
	RefreshInterval time.Duration `yaml:"refreshInterval"`
	// RefetchCooldown between unknown-kid refetches (default 30s).
	RefetchCooldown time.Duration `yaml:"refetchCooldown"`
	// MaxStale is how long keys survive a JWKS outage (default 24h).
	MaxStale time.Duration `yaml:"maxStale"`
	// Credentials accepted from this issuer: "jwt" (a Bearer JWT, the default) and
	// "sessionCookie" (Better Auth's session cookies with the signed cookie cache,
	// verified offline).
	Credentials []string `yaml:"credentials" jsonschema:"enum=jwt,enum=sessionCookie,enum=bearerSession,enum=apiKey"`
	// CookiePrefix is Better Auth's advanced.cookiePrefix (default "better-auth").
	CookiePrefix string `yaml:"cookiePrefix"`
	// TrustedOrigins may send cookie-authenticated unsafe requests (CSRF); the
	// issuer's origin when empty.
	TrustedOrigins []string `yaml:"trustedOrigins"`
	// Revocation, when set, makes sign-out, session revocation and bans take
	// effect within seconds: extauthz polls the extauthz plugin's feed in Better
	// Auth and denies what it lists.
	Revocation *RevocationConfig `yaml:"revocation"`
}

// RevocationConfig is one issuer's revocation feed.
type RevocationConfig struct {
	// FeedURL defaults to <betterAuthURL>/api/auth/extauthz/revocations.
	FeedURL string `yaml:"feedURL"`
	// SecretFile holds the secret shared with the plugin (required).
	SecretFile string `yaml:"secretFile"`
	// PollInterval between polls (default 1s); MaxStale before the issuer's
	// tokens are denied revocation_unavailable (default 30s), unless FailOpen.
	PollInterval time.Duration `yaml:"pollInterval"`
	MaxStale     time.Duration `yaml:"maxStale"`
	FailOpen     bool          `yaml:"failOpen"`
	// AllowInsecure accepts a plain-http feed on a non-loopback host.
	AllowInsecure bool `yaml:"allowInsecure"`
	// Retention is how long revocations are remembered (default 1h): it must be
	// longer than Better Auth's JWT lifetime (the plugin's retentionMs too). A
	// token that lives longer is denied revocation_unavailable.
	Retention time.Duration `yaml:"retention"`
	// RequireSession (default true) denies tokens without a sid claim: without one,
	// signing out of that session cannot be seen.
	RequireSession *bool `yaml:"requireSession"`
	// Postgres reads Better Auth's session table instead of polling a feed, for
	// deployments that cannot add the plugin (feedURL and secretFile then unset).
	Postgres *RevocationPostgresConfig `yaml:"postgres"`
}

// RevocationPostgresConfig locates Better Auth's database.
type RevocationPostgresConfig struct {
	// DSNFile holds a postgres:// URL, best with a read-only role (required).
	DSNFile string `yaml:"dsnFile"`
	// SessionTable and UserTable default to Better Auth's "session" and "user".
	SessionTable string `yaml:"sessionTable"`
	UserTable    string `yaml:"userTable"`
}

// IdentityConfig maps response header names to claim names.
type IdentityConfig struct {
	Headers map[string]string `yaml:"headers"`
}

// RuleConfig is one rule as written.
type RuleConfig struct {
	Name string `yaml:"name" jsonschema:"required,minLength=1"`
	// Mode "shadow" evaluates the rule for every request it would decide and
	// counts and logs that would-be decision, but decides the request as if the
	// rule did not exist: how a new rule or condition is rolled out safely. ""
	// (the default) and "enforce" decide.
	Mode string `yaml:"mode" jsonschema:"enum=,enum=enforce,enum=shadow"`
	// Methods the rule applies to (all when empty); GET includes HEAD.
	Methods []string `yaml:"methods" jsonschema:"pattern=^[A-Z]+$"`
	// Hosts the rule applies to (all when empty): exact names or "*.suffix".
	Hosts []string `yaml:"hosts"`
	// Paths are templates; literal segments ignore ASCII case unless CaseSensitive.
	Paths         []string     `yaml:"paths" jsonschema:"required,minItems=1"`
	CaseSensitive bool         `yaml:"caseSensitive"`
	Public        bool         `yaml:"public"`
	Owner         *OwnerConfig `yaml:"owner"`
	// Org requires membership of the organization a path parameter names.
	Org  *OrgConfig `yaml:"org"`
	When string     `yaml:"when"`
	// RequireVerifiedEmail denies tokens whose emailVerified is not true.
	RequireVerifiedEmail bool `yaml:"requireVerifiedEmail"`
	// DenyAnonymous denies Better Auth's anonymous users (isAnonymous: true).
	DenyAnonymous bool `yaml:"denyAnonymous"`
	// MaxTokenAge, when set, denies tokens issued longer ago (now - iat), for
	// sensitive routes.
	MaxTokenAge *time.Duration `yaml:"maxTokenAge"`
	// OnUnauthenticated "redirect" answers a browser navigation (a GET or HEAD
	// whose Accept prefers HTML) that has no valid credential with 302 to
	// SignInURL, the original path and query in its callbackURL parameter; API
	// calls keep getting 401. "" (the default) is always 401.
	OnUnauthenticated string `yaml:"onUnauthenticated" jsonschema:"enum=,enum=redirect"`
	SignInURL         string `yaml:"signInURL"`
	// ForwardCredentials false keeps the Authorization header, x-api-key and Better
	// Auth's cookies from the backend, which then sees only the identity headers
	// (Envoy only: behind nginx or Traefik such a request is denied).
	ForwardCredentials *bool `yaml:"forwardCredentials"`
}

// OrgConfig requires the organization named by a path parameter to be a key of
// the token's organizations claim, an object {orgId: "role,role"} that a
// definePayload hook adds; with Roles, one of the member's roles must be listed.
type OrgConfig struct {
	Param string `yaml:"param" jsonschema:"required,minLength=1"`
	// Claim holding the organizations; "orgs" when empty.
	Claim string   `yaml:"claim"`
	Roles []string `yaml:"roles"`
}

// OwnerConfig requires a path parameter to equal a claim.
type OwnerConfig struct {
	Param string `yaml:"param" jsonschema:"required,minLength=1"`
	Claim string `yaml:"claim" jsonschema:"required,minLength=1"`
}

// CORSConfig configures CORS preflight handling.
type CORSConfig struct {
	// AllowPreflight lets OPTIONS requests with Origin and
	// Access-Control-Request-Method through without a token.
	AllowPreflight bool `yaml:"allowPreflight"`
}

// Parse decodes a policy document strictly: unknown fields, duplicate keys and a
// second document are errors, so a typo never silently weakens a policy.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy is empty")
		}
		return nil, fmt.Errorf("policy yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy yaml: more than one document")
	}
	return &c, nil
}
