package revocation

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
)

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Metrics, when not nil, is given to every feed whose Config has none.
	Metrics *metrics.Recorder
}

// Pool owns the running feeds of a server, so that a policy reload keeps the
// feeds (and revocations) of issuers whose feed settings did not change.
type Pool struct {
	ctx     context.Context
	metrics *metrics.Recorder

	mu    sync.Mutex
	feeds map[poolKey]*Feed
	dbs   map[dbKey]*Postgres
}

type dbKey struct {
	issuer, dsnFile, sessions, users string
	failOpen                         bool
	ttl                              time.Duration
	maxConns                         int32
}

type poolKey struct {
	issuer, url, secretFile string
	insecure, failOpen      bool
	poll, stale, retention  time.Duration
}

// NewPool returns a Pool whose feeds poll until ctx ends.
func NewPool(ctx context.Context, cfg PoolConfig) *Pool {
	return &Pool{ctx: ctx, metrics: cfg.Metrics, feeds: map[poolKey]*Feed{}, dbs: map[dbKey]*Postgres{}}
}

// Acquire returns the running feed for cfg, starting one if none runs yet.
func (p *Pool) Acquire(cfg Config) (*Feed, error) {
	k := poolKey{cfg.Issuer, cfg.URL, cfg.SecretFile, cfg.AllowInsecure, cfg.FailOpen, cfg.PollInterval, cfg.MaxStale, cfg.Retention}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.feeds[k]; ok {
		return f, nil
	}
	if cfg.Metrics == nil {
		cfg.Metrics = p.metrics
	}
	f, err := New(cfg)
	if err != nil {
		return nil, err
	}
	f.Start(p.ctx)
	p.feeds[k] = f
	return f, nil
}

// AcquirePostgres returns the database checker for cfg, opening one if needed.
func (p *Pool) AcquirePostgres(cfg PostgresConfig) (*Postgres, error) {
	k := dbKey{cfg.Issuer, cfg.DSNFile, cfg.SessionTable, cfg.UserTable, cfg.FailOpen, cfg.PositiveTTL, cfg.MaxConns}
	p.mu.Lock()
	defer p.mu.Unlock()
	if db, ok := p.dbs[k]; ok {
		return db, nil
	}
	db, err := NewPostgres(p.ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.dbs[k] = db
	return db, nil
}

// Retain stops every feed and closes every database checker not in keep.
func (p *Pool) Retain(feeds []*Feed, dbs []*Postgres) {
	p.mu.Lock()
	var stop []*Feed
	var closeDBs []*Postgres
	for k, f := range p.feeds {
		if !slices.Contains(feeds, f) {
			delete(p.feeds, k)
			stop = append(stop, f)
		}
	}
	for k, db := range p.dbs {
		if !slices.Contains(dbs, db) {
			delete(p.dbs, k)
			closeDBs = append(closeDBs, db)
		}
	}
	successor := map[string]bool{}
	for _, f := range p.feeds {
		successor[f.cfg.Issuer] = true
	}
	p.mu.Unlock()
	for _, f := range stop {
		f.Stop()
		// A feed whose settings changed has a successor for the same issuer, whose
		// series must stay.
		if !successor[f.cfg.Issuer] {
			p.metrics.RevocationForget(f.cfg.Issuer)
		}
	}
	for _, db := range closeDBs {
		db.Close()
	}
}
