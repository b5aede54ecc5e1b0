// Package reload applies policy documents to a running engine: parse, validate,
// compile, start the JWKS caches of new issuers, wait for their first keys, swap the
// snapshot atomically, then stop the caches no policy needs. A document that fails
// any step is refused and the policy in force stays, whatever the Source (a file,
// a ConfigMap, a fixed document).
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// DefaultKeyWait bounds how long Apply waits for a new issuer's first JWKS answer
// before swapping anyway (that issuer's tokens are then denied jwks_unavailable
// until its keys arrive, exactly as at start-up).
const DefaultKeyWait = 10 * time.Second

// Config configures a Reloader. Engine and Pool are required.
type Config struct {
	Engine *engine.Engine
	Pool   *jwkscache.Pool
	// Feeds runs issuers' revocation feeds; a policy with a revocation feed is
	// refused when it is nil.
	Feeds *revocation.Pool
	// Metrics may be nil (nothing recorded).
	Metrics *metrics.Recorder
	// Log defaults to slog.Default().
	Log *slog.Logger
	// KeyWait defaults to DefaultKeyWait.
	KeyWait time.Duration
	// Verifier carries the verifier settings every snapshot shares (the token
	// cache, a clock); the policy supplies the rest.
	Verifier token.Config
}

// Reloader owns the policy in force.
type Reloader struct {
	cfg Config

	mu      sync.Mutex // one Apply at a time, so swaps happen in arrival order
	hash    string
	inForce *built // the caches and feeds of the policy in force
}

// New returns a Reloader with no policy applied.
func New(cfg Config) (*Reloader, error) {
	if cfg.Engine == nil || cfg.Pool == nil {
		return nil, errors.New("reload: Engine and Pool are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.KeyWait <= 0 {
		cfg.KeyWait = DefaultKeyWait
	}
	return &Reloader{cfg: cfg}, nil
}

// Run feeds src's documents to Apply until ctx ends or src fails (see Source).
func (r *Reloader) Run(ctx context.Context, src Source) error {
	return src.Run(ctx, r.Apply)
}

// Apply makes u's document the policy in force, or refuses it: this is the one
// place a rejection is counted and logged, and the previous policy kept.
func (r *Reloader) Apply(ctx context.Context, u Update) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.cfg.Log.With("source", u.Source)
	if u.Err != nil {
		return r.reject(log, u, u.Err)
	}
	// The informer's periodic resync and editors that rewrite a file unchanged send
	// the same document again: recognise it before compiling anything.
	if h := policy.Hash(u.Doc); h == r.hash {
		return Outcome{Result: Unchanged, Hash: h}
	}
	p, err := policy.Load(u.Doc)
	if err != nil {
		return r.reject(log, u, err)
	}
	b, err := build(p, r.cfg.Pool, r.cfg.Feeds, r.cfg.Log, r.cfg.Verifier)
	if err != nil {
		r.retain(r.inForce) // stop what the failed build started
		return r.reject(log, u, err)
	}
	snap := b.snap
	// Issuers shared with the old policy reuse their running caches (and keys); new
	// ones get a moment to fetch theirs, so the swap opens no window without keys.
	wctx, cancel := context.WithTimeout(ctx, r.cfg.KeyWait)
	err = waitReady(wctx, snap)
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// Shutting down: nothing to swap to, and nothing new to keep running.
		r.retain(r.inForce)
		return Outcome{Result: Rejected, Hash: r.hash, Err: fmt.Errorf("waiting for keys: %w", err)}
	}
	r.cfg.Engine.Swap(snap)
	r.retain(b)
	r.inForce = b
	r.hash = p.Hash
	r.cfg.Metrics.PolicyApplied(u.Source, p.Hash)
	log.Info("policy applied", "hash", p.Hash, "issuers", len(p.Issuers), "rules", len(p.Rules), "warnings", len(p.Warnings))
	for _, w := range p.Warnings {
		log.Warn("policy lint", "hash", p.Hash, "warning", w)
	}
	return Outcome{Result: Applied, Hash: p.Hash, Warnings: p.Warnings}
}

// retain keeps b's caches and feeds running (nil: none) and stops the others.
func (r *Reloader) retain(b *built) {
	if b == nil {
		b = &built{}
	}
	r.cfg.Pool.Retain(b.caches)
	if r.cfg.Feeds != nil {
		r.cfg.Feeds.Retain(b.feeds, b.dbs)
	}
}

func (r *Reloader) reject(log *slog.Logger, u Update, err error) Outcome {
	r.cfg.Metrics.PolicyRejected(u.Source)
	log.Error("policy rejected; the previous policy stays in force", "error", err.Error(), "previous_hash", r.hash)
	return Outcome{Result: Rejected, Hash: r.hash, Err: err}
}

// Hash returns the hash of the policy in force ("" before the first).
func (r *Reloader) Hash() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hash
}
