// Package reload applies policy documents to a running engine: parse, validate,
// compile, start the JWKS caches of new issuers, wait for their first keys, swap the
// snapshot atomically, then stop the caches no policy needs. A document that fails
// any step is refused and the policy in force stays, whatever the source (a file,
// a ConfigMap).
package reload

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// DefaultKeyWait bounds how long Apply waits for a new issuer's first JWKS answer
// before swapping anyway (that issuer's tokens are then denied jwks_unavailable
// until its keys arrive, exactly as at start-up).
const DefaultKeyWait = 10 * time.Second

// Reloader owns the policy in force.
type Reloader struct {
	Engine  *engine.Engine
	Pool    *jwkscache.Pool
	Metrics *metrics.Set
	Log     *slog.Logger
	// KeyWait overrides DefaultKeyWait when positive.
	KeyWait time.Duration
	// VerifierOptions apply to every snapshot's verifier (e.g. token.WithCache).
	VerifierOptions []token.Option

	mu       sync.Mutex // one Apply at a time, so swaps happen in arrival order
	hash     string
	warnings []string
}

// Result says what Apply did.
type Result int

// Apply results.
const (
	Applied   Result = iota // a new policy is in force
	Unchanged               // the same document is already in force
	Rejected                // the document was refused; the old policy stays
)

// Apply makes doc the policy in force, or refuses it. source labels metrics and logs
// (e.g. "configmap:ns/name" or "file:/etc/extauthz/policy.yaml").
func (r *Reloader) Apply(ctx context.Context, source string, doc []byte) (Result, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.log().With("source", source)

	// The informer's periodic resync and editors that rewrite a file unchanged send
	// the same document again: recognise it before compiling anything.
	if h := policy.Hash(doc); h == r.hash {
		return Unchanged, h, nil
	}
	p, err := policy.Load(doc)
	if err != nil {
		r.Metrics.PolicyRejected(source)
		log.Error("policy rejected; the previous policy stays in force", "error", err.Error(), "previous_hash", r.hash)
		return Rejected, "", err
	}
	snap, caches, err := engine.Build(p, r.Pool, r.Log, r.VerifierOptions...)
	if err != nil {
		r.Metrics.PolicyRejected(source)
		log.Error("policy rejected; the previous policy stays in force", "error", err.Error(), "previous_hash", r.hash)
		return Rejected, "", err
	}
	// Issuers shared with the old policy reuse their running caches (and keys); new
	// ones get a moment to fetch theirs, so the swap opens no window without keys.
	wait := r.KeyWait
	if wait <= 0 {
		wait = DefaultKeyWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	if err := engine.WaitReady(wctx, snap); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		cancel()
		return Rejected, "", err
	}
	cancel()
	r.Engine.Swap(snap)
	r.Pool.Retain(caches)
	r.hash, r.warnings = p.Hash, p.Warnings
	r.Metrics.PolicyApplied(source, p.Hash)
	log.Info("policy applied", "hash", p.Hash, "issuers", len(p.Issuers), "rules", len(p.Rules), "warnings", len(p.Warnings))
	for _, w := range p.Warnings {
		log.Warn("policy lint", "hash", p.Hash, "warning", w)
	}
	return Applied, p.Hash, nil
}

// Warnings returns the lint warnings of the policy in force (see policy.Policy).
func (r *Reloader) Warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warnings
}

// Hash returns the hash of the policy in force ("" before the first).
func (r *Reloader) Hash() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hash
}

func (r *Reloader) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}
