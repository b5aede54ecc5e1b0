package reload

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// build turns a compiled policy into a Snapshot, acquiring a running JWKS cache for
// each issuer from pool, and a running revocation feed from feeds for each issuer
// that has one.
func build(p *policy.Policy, pool *jwkscache.Pool, feeds *revocation.Pool, log *slog.Logger, base token.Config) (*built, error) {
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
			return nil, fmt.Errorf("issuer %s: %w", is.Issuer, err)
		}
		caches[is.Issuer] = c
		list = append(list, c)
	}
	s, err := engine.NewSnapshot(p, func(is policy.Issuer) token.KeySource { return caches[is.Issuer] }, base)
	if err != nil {
		return nil, err
	}
	b := &built{snap: s, caches: list}
	waits := make([]interface{ Ready() <-chan struct{} }, 0, len(list))
	for _, c := range list {
		waits = append(waits, c)
	}
	for _, is := range p.Issuers {
		if is.Revocation == nil {
			continue
		}
		if feeds == nil {
			return nil, fmt.Errorf("issuer %s: revocation is not available here", is.Issuer)
		}
		r := is.Revocation
		if s.Revocations == nil {
			s.Revocations = map[string]engine.RevocationChecker{}
		}
		if r.Postgres != nil {
			db, err := feeds.AcquirePostgres(revocation.PostgresConfig{Issuer: is.Issuer, DSNFile: r.Postgres.DSNFile,
				SessionTable: r.Postgres.SessionTable, UserTable: r.Postgres.UserTable, FailOpen: r.FailOpen, Log: log, Now: base.Now})
			if err != nil {
				return nil, fmt.Errorf("issuer %s: %w", is.Issuer, err)
			}
			s.Revocations[is.Issuer] = db
			b.dbs = append(b.dbs, db)
			continue
		}
		f, err := feeds.Acquire(revocation.Config{Issuer: is.Issuer, URL: r.FeedURL, SecretFile: r.SecretFile, AllowInsecure: r.AllowInsecure,
			PollInterval: r.PollInterval, MaxStale: r.MaxStale, FailOpen: r.FailOpen, Retention: r.Retention, Log: log, Now: base.Now})
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", is.Issuer, err)
		}
		s.Revocations[is.Issuer] = f
		b.feeds = append(b.feeds, f)
		waits = append(waits, f)
	}
	s.Ready = allReady(waits)
	return b, nil
}

// built is a snapshot with the running caches and feeds it uses; pass them to the
// pools' Retain after the swap so that those no policy needs are stopped.
type built struct {
	snap   *engine.Snapshot
	caches []*jwkscache.Cache
	feeds  []*revocation.Feed
	dbs    []*revocation.Postgres
}

// allReady closes the returned channel when every cache and feed has finished its
// first fetch.
func allReady(waits []interface{ Ready() <-chan struct{} }) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for _, w := range waits {
			<-w.Ready()
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
