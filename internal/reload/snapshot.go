package reload

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// build turns a compiled policy into a Snapshot, acquiring a running JWKS cache for
// each issuer from pool. The returned caches are what the snapshot uses; pass them
// to pool.Retain after the swap so that caches no policy needs are stopped.
func build(p *policy.Policy, pool *jwkscache.Pool, log *slog.Logger, base token.Config) (*engine.Snapshot, []*jwkscache.Cache, error) {
	caches := make(map[string]*jwkscache.Cache, len(p.Issuers))
	list := make([]*jwkscache.Cache, 0, len(p.Issuers))
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
		caches[is.Issuer] = c
		list = append(list, c)
	}
	s, err := engine.NewSnapshot(p, func(is policy.Issuer) token.KeySource { return caches[is.Issuer] }, base)
	if err != nil {
		return nil, nil, err
	}
	s.Ready = allReady(list)
	return s, list, nil
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

// waitReady blocks until s is ready or ctx ends.
func waitReady(ctx context.Context, s *engine.Snapshot) error {
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
