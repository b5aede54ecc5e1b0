// Package reload applies policy documents to a running engine: parse, validate,
// compile, start the JWKS caches of new issuers, wait for their first keys, swap the
// snapshot atomically, then stop the caches no policy needs. A document that fails
// any step is refused and the policy in force stays, whatever the Source (a file,
// a ConfigMap, a fixed document).
package reload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// base is the base document in force (nil before the first), frags the
	// fragments last received; together they make the policy in force.
	base     []byte
	baseHash string
	frags    []policy.Fragment
	// statuses are the fragments' of the policy in force; changed is closed
	// (and replaced) when they change.
	statuses []policy.FragmentStatus
	changed  chan struct{}
	// lastGood is each fragment's last version in force, kept while a new
	// version of it is rejected.
	lastGood map[string][]byte
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
	if h := policy.Hash(u.Doc); h == r.baseHash {
		return Outcome{Result: Unchanged, Hash: r.hash}
	}
	out, _ := r.compose(ctx, log, u.Source, u.Doc, r.frags)
	if out.Result == Applied {
		r.base, r.baseHash = u.Doc, policy.Hash(u.Doc)
	}
	return out
}

// ApplyFragments makes frags the policy fragments (all of them: a fragment not
// listed is gone) and recomposes the policy in force with them. It reports what
// became of each; a rejected fragment changes nothing else. Before the first
// base policy, every fragment waits.
func (r *Reloader) ApplyFragments(ctx context.Context, source string, frags []policy.Fragment) []policy.FragmentStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frags = frags
	if r.base == nil {
		out := make([]policy.FragmentStatus, len(frags))
		for i, f := range frags {
			out[i] = policy.FragmentStatus{ID: f.ID, Hash: policy.Hash(f.Doc), Waiting: true, Error: "no base policy is in force yet"}
		}
		r.setStatuses(out)
		return out
	}
	_, st := r.compose(ctx, r.cfg.Log.With("source", source), source, r.base, frags)
	return st
}

// compose builds the policy of base and frags and swaps it in, or refuses it. A
// fragment whose issuer cannot be started (a JWKS cache refused) is rejected and
// the rest tried again.
func (r *Reloader) compose(ctx context.Context, log *slog.Logger, source string, base []byte, frags []policy.Fragment) (Outcome, []policy.FragmentStatus) {
	frags = slices.Clone(frags)
	for i := range frags {
		if good, ok := r.lastGood[frags[i].ID]; ok && !bytes.Equal(good, frags[i].Doc) {
			frags[i].Fallback = good
		}
	}
	p, err := policy.Compose(base, frags)
	if err != nil {
		return r.reject(log, Update{Source: source}, err), nil
	}
	b, err := build(p, r.cfg.Pool, r.cfg.Feeds, r.cfg.Log, r.cfg.Verifier)
	if err != nil && len(frags) > 0 {
		r.retain(r.inForce)
		for _, is := range p.Issuers {
			if is.Fragment == "" {
				continue
			}
			for i := range frags {
				if frags[i].ID == is.Fragment {
					frags[i].Err = fmt.Errorf("issuer %s: %w", is.Issuer, err)
				}
			}
		}
		if p, err = policy.Compose(base, frags); err == nil {
			b, err = build(p, r.cfg.Pool, r.cfg.Feeds, r.cfg.Log, r.cfg.Verifier)
		}
	}
	if err != nil {
		r.retain(r.inForce) // stop what the failed build started
		return r.reject(log, Update{Source: source}, err), nil
	}
	defer r.setStatuses(p.Fragments)
	r.remember(frags, p.Fragments)
	for _, st := range p.Fragments {
		if !st.Applied {
			log.Warn("policy fragment rejected", "fragment", st.ID, "fragment_hash", st.Hash, "error", st.Error)
		}
	}
	if p.Hash == r.hash {
		r.retain(r.inForce)
		return Outcome{Result: Unchanged, Hash: p.Hash}, p.Fragments
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
		return Outcome{Result: Rejected, Hash: r.hash, Err: fmt.Errorf("waiting for keys: %w", err)}, nil
	}
	r.cfg.Engine.Swap(snap)
	r.retain(b)
	r.inForce = b
	r.hash = p.Hash
	r.cfg.Metrics.PolicyApplied(source, p.Hash)
	log.Info("policy applied", "hash", p.Hash, "issuers", len(p.Issuers), "rules", len(p.Rules), "fragments", appliedCount(p.Fragments), "warnings", len(p.Warnings))
	for _, w := range p.Warnings {
		log.Warn("policy lint", "hash", p.Hash, "warning", w)
	}
	return Outcome{Result: Applied, Hash: p.Hash, Warnings: p.Warnings}, p.Fragments
}

// remember keeps the version of each fragment that is in force (r.mu held).
func (r *Reloader) remember(frags []policy.Fragment, sts []policy.FragmentStatus) {
	docs := make(map[string][]byte, len(frags))
	for _, f := range frags {
		docs[f.ID] = f.Doc
	}
	good := make(map[string][]byte, len(sts))
	for _, st := range sts {
		switch {
		case st.Applied:
			good[st.ID] = docs[st.ID]
		case st.InForce != "":
			good[st.ID] = r.lastGood[st.ID]
		}
	}
	r.lastGood = good
}

// FragmentStatuses returns what became of each fragment in the policy in force,
// and a channel closed when that changes.
func (r *Reloader) FragmentStatuses() ([]policy.FragmentStatus, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return slices.Clone(r.statuses), r.changed
}

// setStatuses records the fragments' statuses (r.mu held), in metrics too.
func (r *Reloader) setStatuses(sts []policy.FragmentStatus) {
	r.cfg.Metrics.Fragments(fragmentStates(sts))
	if slices.EqualFunc(sts, r.statuses, func(a, b policy.FragmentStatus) bool {
		return a.ID == b.ID && a.Hash == b.Hash && a.Applied == b.Applied && a.Error == b.Error && a.Waiting == b.Waiting
	}) {
		return
	}
	r.statuses = slices.Clone(sts)
	if r.changed != nil {
		close(r.changed)
	}
	r.changed = make(chan struct{})
}

func fragmentStates(sts []policy.FragmentStatus) map[string]bool {
	m := make(map[string]bool, len(sts))
	for _, st := range sts {
		m[st.ID] = st.Applied
	}
	return m
}

func appliedCount(sts []policy.FragmentStatus) int {
	n := 0
	for _, st := range sts {
		if st.Applied {
			n++
		}
	}
	return n
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
