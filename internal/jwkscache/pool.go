package jwkscache

import (
	"context"
	"sync"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
)

// Pool owns the running caches of a server, so that a policy reload reuses the
// caches (and keys) of issuers that the old and new policy share, and stops only
// the caches that no policy uses any more.
type Pool struct {
	ctx     context.Context
	metrics *metrics.Recorder

	mu     sync.Mutex
	caches map[poolKey]*Cache
}

type poolKey struct {
	url, name                   string
	insecure                    bool
	refresh, cooldown, maxStale time.Duration
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Metrics, when not nil, is given to every cache whose Config has none.
	Metrics *metrics.Recorder
}

// NewPool returns a Pool whose caches run until ctx ends.
func NewPool(ctx context.Context, cfg PoolConfig) *Pool {
	return &Pool{ctx: ctx, metrics: cfg.Metrics, caches: map[poolKey]*Cache{}}
}

// Acquire returns the running cache for cfg, starting one if none runs yet.
func (p *Pool) Acquire(cfg Config) (*Cache, error) {
	k := poolKey{cfg.URL, cfg.Name, cfg.AllowInsecure, cfg.RefreshInterval, cfg.Cooldown, cfg.MaxStale}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.caches[k]; ok {
		return c, nil
	}
	if cfg.Metrics == nil {
		cfg.Metrics = p.metrics
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	c.Start(p.ctx)
	p.caches[k] = c
	return c, nil
}

// Retain stops every cache that is not in keep.
func (p *Pool) Retain(keep []*Cache) {
	p.mu.Lock()
	var stop []*Cache
	for k, c := range p.caches {
		used := false
		for _, kc := range keep {
			if kc == c {
				used = true
				break
			}
		}
		if !used {
			delete(p.caches, k)
			stop = append(stop, c)
		}
	}
	// A kept cache may share a name with a stopped one (same issuer, other
	// intervals): its series must stay.
	named := map[string]bool{}
	for _, c := range p.caches {
		named[c.Name()] = true
	}
	p.mu.Unlock()
	for _, c := range stop {
		c.Stop()
		if !named[c.Name()] {
			p.metrics.JWKSForget(c.Name())
		}
	}
}
