// Package jwkscache keeps the public keys of one token issuer in memory and fresh.
//
// A Cache fetches the issuer's JWKS at start, refreshes it in the background with
// jitter, refetches at most once per cooldown when a token names an unknown kid
// (Better Auth mints a new key at the first signing after rotation, so a verifier
// meets the new kid before its next scheduled refresh), and keeps the last good key
// set through outages until it is older than MaxStale.
package jwkscache

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// Defaults for the zero values of Config.
const (
	DefaultRefreshInterval = 5 * time.Minute
	DefaultCooldown        = 30 * time.Second
	DefaultMaxStale        = 24 * time.Hour
	DefaultFetchTimeout    = 5 * time.Second
	DefaultWaitTimeout     = 2 * time.Second
	// MaxBodySize bounds a JWKS response; real ones are a few KiB.
	MaxBodySize = 1 << 20
)

// Config describes one issuer's JWKS endpoint. Zero durations take the defaults above.
type Config struct {
	// URL of the JWKS document, e.g. https://auth.example.com/api/auth/jwks.
	URL string
	// Name labels metrics and logs; the issuer URL is a good choice.
	Name string
	// AllowInsecure permits a plain-http URL on a non-loopback host.
	AllowInsecure bool
	// RefreshInterval is the mean time between background refreshes (jittered ±10%).
	RefreshInterval time.Duration
	// Cooldown is the minimum time between two unknown-kid refetches.
	Cooldown time.Duration
	// MaxStale is how long a key set survives failed refreshes before it is dropped.
	MaxStale time.Duration
	// FetchTimeout bounds one fetch.
	FetchTimeout time.Duration
	// WaitTimeout bounds how long a Lookup waits for an unknown-kid refetch.
	WaitTimeout time.Duration
	// Client is the HTTP client; nil builds one with FetchTimeout and a safe redirect policy.
	Client *http.Client
	// Metrics may be nil.
	Metrics *metrics.Recorder
	// Logger may be nil (slog.Default is used).
	Logger *slog.Logger
	// Now may be nil (time.Now); tests set it to move the clock.
	Now func() time.Time
}

// keySet is an immutable, fetched JWKS.
type keySet struct {
	keys    keyset.Static
	fetched time.Time
}

// Cache holds one issuer's keys. Create it with New, start it with Start.
type Cache struct {
	cfg Config
	log *slog.Logger

	set atomic.Pointer[keySet]

	// mu guards the on-demand refetch state. It is taken only when a token names a
	// kid we do not have, never on the hot path.
	mu          sync.Mutex
	inflight    chan struct{}
	lastRefetch time.Time

	// skipLogged remembers which skipped keys were logged, so that a bad key in the
	// JWKS costs one log line, not one per refresh. skipMu guards it: the refresh
	// loop and an unknown-kid refetch may fetch at the same time.
	skipMu     sync.Mutex
	skipLogged map[string]bool

	firstDone chan struct{}
	firstOnce sync.Once
	stop      context.CancelFunc
	stopped   chan struct{}
}

// New validates cfg and returns a Cache that has not fetched anything yet.
func New(cfg Config) (*Cache, error) {
	if err := jwksurl.Check(cfg.URL, cfg.AllowInsecure); err != nil {
		return nil, err
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultMaxStale
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.Name == "" {
		cfg.Name = jwksurl.Redact(cfg.URL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = NewHTTPClient(cfg.FetchTimeout, cfg.AllowInsecure)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Cache{
		cfg:       cfg,
		log:       log.With("issuer", cfg.Name, "jwks_url", jwksurl.Redact(cfg.URL)),
		firstDone: make(chan struct{}),
		stopped:   make(chan struct{}),
	}, nil
}

// Start fetches the key set in the background and keeps it fresh until ctx ends or
// Stop is called. It returns at once; Ready tells when the first fetch has finished.
func (c *Cache) Start(ctx context.Context) {
	ctx, c.stop = context.WithCancel(ctx)
	c.cfg.Metrics.JWKSRegistered(c.cfg.Name)
	go c.loop(ctx)
}

// Stop ends background refreshes and waits for the loop to exit.
func (c *Cache) Stop() {
	if c.stop != nil {
		c.stop()
		<-c.stopped
	}
}

// Ready is closed once the first fetch has finished, whether it succeeded or not.
func (c *Cache) Ready() <-chan struct{} { return c.firstDone }

// Name returns the cache's label (its issuer).
func (c *Cache) Name() string { return c.cfg.Name }

// Keys returns a copy of the current usable keys, or nil when there is no usable set.
func (c *Cache) Keys() []*keyset.Key {
	s := c.current()
	if s == nil {
		return nil
	}
	out := make([]*keyset.Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out
}

func (c *Cache) loop(ctx context.Context) {
	defer close(c.stopped)
	backoff := time.Second
	for {
		err := c.refresh(ctx, "background")
		c.firstOnce.Do(func() { close(c.firstDone) })
		wait := jitter(c.cfg.RefreshInterval)
		if err != nil && c.current() == nil {
			// Nothing usable yet: retry sooner than a full interval, so a service that
			// starts before Better Auth becomes usable within seconds.
			wait = min(backoff, wait)
			backoff = min(backoff*2, time.Minute)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// jitter spreads d by ±10% so that replicas do not refresh in lockstep.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// current returns the key set if it is fresh enough to use.
func (c *Cache) current() *keySet {
	s := c.set.Load()
	if s == nil || c.cfg.Now().Sub(s.fetched) > c.cfg.MaxStale {
		return nil
	}
	return s
}

// refresh fetches the JWKS once and installs it if it is usable. A failure keeps the
// previous set, and drops it once it is older than MaxStale.
func (c *Cache) refresh(ctx context.Context, trigger string) error {
	ctx, span := tracing.Tracer().Start(ctx, "extauthz.jwks.fetch", trace.WithAttributes(
		attribute.String("extauthz.issuer", c.cfg.Name), attribute.String("extauthz.trigger", trigger)))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	keys, err := c.fetch(ctx)
	now := c.cfg.Now()
	c.cfg.Metrics.JWKSFetched(c.cfg.Name, trigger, err, len(keys), now)
	span.SetAttributes(attribute.Int("extauthz.keys", len(keys)))
	if err != nil {
		span.SetStatus(codes.Error, "jwks fetch failed")
	}
	if err != nil {
		old := c.set.Load()
		switch {
		case old == nil:
			c.log.Warn("jwks fetch failed; no keys yet", "trigger", trigger, "error", err)
		case now.Sub(old.fetched) > c.cfg.MaxStale:
			c.set.CompareAndSwap(old, nil)
			c.cfg.Metrics.JWKSDropped(c.cfg.Name)
			c.log.Error("jwks fetch failed and cached keys exceeded maxStale; dropped them",
				"trigger", trigger, "error", err, "age", now.Sub(old.fetched).String())
		default:
			c.log.Warn("jwks fetch failed; keeping cached keys", "trigger", trigger, "error", err,
				"age", now.Sub(old.fetched).String())
		}
		return err
	}
	// Keep the *keyset.Key of every key that did not change: a verified-token cache
	// compares key pointers, so a refresh must not look like a rotation.
	if old := c.set.Load(); old != nil {
		for kid, k := range keys {
			if o, ok := old.keys[kid]; ok && o.SameAs(k) {
				keys[kid] = o
			}
		}
	}
	c.set.Store(&keySet{keys: keys, fetched: now})
	c.log.Debug("jwks refreshed", "trigger", trigger, "keys", len(keys))
	return nil
}

func (c *Cache) fetch(ctx context.Context) (keyset.Static, error) {
	keys, skipped, err := fetchKeys(ctx, c.cfg.Client, c.cfg.URL)
	if err == nil {
		c.cfg.Metrics.JWKSSkipped(c.cfg.Name, len(skipped))
	}
	c.skipMu.Lock()
	if c.skipLogged == nil {
		c.skipLogged = map[string]bool{}
	}
	for _, s := range skipped {
		if !c.skipLogged[s] {
			c.skipLogged[s] = true
			c.log.Warn("jwks key skipped", "reason", s)
		}
	}
	c.skipMu.Unlock()
	return keys, err
}

// Lookup returns the key with the given kid. An unknown kid triggers one refetch
// shared by all concurrent callers, at most once per Cooldown; within the cooldown
// it fails at once with keyset.ErrUnknownKID (counted as suppressed).
func (c *Cache) Lookup(ctx context.Context, kid string) (*keyset.Key, error) {
	if k := c.Peek(kid); k != nil {
		return k, nil
	}
	c.refetch(ctx)
	s := c.current()
	if s == nil {
		return nil, keyset.ErrUnavailable
	}
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, keyset.ErrUnknownKID
}

// Peek returns the current key with the given kid, or nil, without fetching. It
// takes no lock.
func (c *Cache) Peek(kid string) *keyset.Key {
	if s := c.current(); s != nil {
		return s.keys[kid]
	}
	return nil
}

// refetch joins the refetch in flight, or starts one if the cooldown has passed.
//
// This is singleflight plus a cooldown. x/sync/singleflight cannot decide "join the
// fetch in flight, else start one only if the cooldown passed" atomically, so the
// few lines are written here, under a mutex that the hot path never takes.
func (c *Cache) refetch(ctx context.Context) {
	c.mu.Lock()
	ch := c.inflight
	if ch == nil {
		now := c.cfg.Now()
		if !c.lastRefetch.IsZero() && now.Sub(c.lastRefetch) < c.cfg.Cooldown {
			c.mu.Unlock()
			c.cfg.Metrics.RefetchSuppressed(c.cfg.Name)
			return
		}
		c.lastRefetch = now
		ch = make(chan struct{})
		c.inflight = ch
		// The fetch is detached from the caller's cancellation: one caller giving up
		// must not cancel the fetch that the others wait for. (It keeps the
		// caller's trace.)
		detached := context.WithoutCancel(ctx)
		go func() {
			_ = c.refresh(detached, "unknown_kid")
			c.mu.Lock()
			c.inflight = nil
			c.mu.Unlock()
			close(ch)
		}()
	}
	c.mu.Unlock()
	t := time.NewTimer(c.cfg.WaitTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}
