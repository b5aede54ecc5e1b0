package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/online"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// KeysFor chooses the key source that verifies one issuer's tokens.
type KeysFor func(policy.Issuer) token.KeySource

// SameKeys verifies every issuer with keys: a JWKS file read by the CLI, say.
func SameKeys(keys token.KeySource) KeysFor {
	return func(policy.Issuer) token.KeySource { return keys }
}

// NewSnapshot builds the Snapshot for p, ready at once (set Ready to make it wait).
// base carries the verifier settings a policy does not have (cache, clock); its
// Issuers, Leeway and Claims are taken from p.
func NewSnapshot(p *policy.Policy, keys KeysFor, base token.Config) (*Snapshot, error) {
	cfg := base
	cfg.Issuers = make([]token.Issuer, len(p.Issuers))
	for i, is := range p.Issuers {
		cfg.Issuers[i] = token.Issuer{Issuer: is.Issuer, Audiences: is.Audiences, Algorithms: is.Algorithms, Keys: keys(is)}
	}
	cfg.Leeway = p.Leeway
	if p.Leeway == 0 {
		cfg.Leeway = token.NoLeeway // the policy asked for none
	}
	cfg.KeepClaims = nil
	if !p.AllClaims {
		// Keep only the claims the policy reads, plus sub and uuid for Envoy's
		// dynamic metadata and those the account checks read.
		cfg.KeepClaims = append(slices.Clone(p.ClaimNames), "sub", "uuid", "sid", "banned", "banExpires")
	}
	v, err := token.NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	now := base.Now
	if now == nil {
		now = time.Now
	}
	s := &Snapshot{Policy: p, Verifier: v, Now: now}
	for _, is := range p.Issuers {
		if is.GetSessionURL == "" {
			continue
		}
		o, err := online.New(online.Config{Issuer: is.Issuer, URL: is.GetSessionURL, AllowInsecure: is.AllowInsecureJWKS, Now: now})
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", is.Issuer, err)
		}
		if s.Online == nil {
			s.Online = map[string]*online.Verifier{}
		}
		s.Online[is.Issuer] = o
	}
	return s, nil
}
