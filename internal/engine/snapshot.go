package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// Build turns a compiled policy into a Snapshot, acquiring a running JWKS cache for
// each issuer from pool. The returned caches are what the snapshot uses; pass them
// to pool.Retain after the swap so that caches no policy needs are stopped.
func Build(p *policy.Policy, pool *jwkscache.Pool, log *slog.Logger, opts ...token.Option) (*Snapshot, []*jwkscache.Cache, error) {
	caches := make([]*jwkscache.Cache, 0, len(p.Issuers))
	sources := make([]token.KeySource, 0, len(p.Issuers))
	for _, is := range p.Issuers {
		c, err := pool.Acquire(jwkscache.Config{
			URL:             is.JWKSURL,
			Name:            is.Issuer,
			AllowInsecure:   is.AllowInsecureJWKS,
			RefreshInterval: is.RefreshInterval,
			Cooldown:        is.RefetchCooldown,
			MaxStale:        is.MaxStale,
			Logger:          log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("issuer %s: %w", is.Issuer, err)
		}
		caches = append(caches, c)
		sources = append(sources, c)
	}
	s, err := newSnapshot(p, sources, opts)
	if err != nil {
		return nil, nil, err
	}
	s.Ready = allReady(caches)
	return s, caches, nil
}

// BuildStatic builds a Snapshot whose issuers all use keys, e.g. a JWKS file read
// by the CLI. It is ready at once.
func BuildStatic(p *policy.Policy, keys token.KeySource, opts ...token.Option) (*Snapshot, error) {
	sources := make([]token.KeySource, len(p.Issuers))
	for i := range sources {
		sources[i] = keys
	}
	return newSnapshot(p, sources, opts)
}

func newSnapshot(p *policy.Policy, sources []token.KeySource, opts []token.Option) (*Snapshot, error) {
	issuers := make([]token.Issuer, len(p.Issuers))
	for i, is := range p.Issuers {
		issuers[i] = token.Issuer{Issuer: is.Issuer, Audiences: is.Audiences, Algorithms: is.Algorithms, Keys: sources[i]}
	}
	base := []token.Option{token.WithLeeway(p.Leeway)}
	if !p.AllClaims {
		// Keep only the claims the policy reads, plus sub and uuid for Envoy's
		// dynamic metadata.
		base = append(base, token.WithClaims(append(slices.Clone(p.Claims), "sub", "uuid")))
	}
	opts = append(base, opts...)
	v, err := token.NewVerifier(issuers, opts...)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Policy: p, Verifier: v}, nil
}

// allReady closes the returned channel when every cache has finished its first fetch.
func allReady(caches []*jwkscache.Cache) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for _, c := range caches {
			<-c.Ready()
		}
		close(ch)
	}()
	return ch
}

// WaitReady blocks until s is ready or ctx ends.
func WaitReady(ctx context.Context, s *Snapshot) error {
	if s.Ready == nil {
		return nil
	}
	select {
	case <-s.Ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
