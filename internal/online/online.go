// Package online verifies the credentials that cannot be checked offline (a
// session cookie without the signed cookie cache, a bearer-plugin token, an API
// key) by asking the issuing Better Auth's get-session, with caches that keep it
// to about one call per credential per TTL, one in flight per credential, a cap on
// concurrent calls and a timeout. Every failure denies (session_unavailable); an
// error is never cached as a success.
package online

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// Defaults for the zero values of Config.
const (
	DefaultPositiveTTL = 10 * time.Second
	DefaultNegativeTTL = 10 * time.Second
	DefaultTimeout     = 2 * time.Second
	DefaultConcurrency = 32
	maxCached          = 100_000
	maxBody            = 1 << 20
)

// Kind is the credential sent to get-session.
type Kind int

// Kinds of credentials.
const (
	SessionCookie Kind = iota // the session_token cookie
	BearerSession             // the bearer plugin's "<token>.<signature>"
	APIKey                    // the api-key plugin's x-api-key
)

// Credential is one credential to check, and the client address to forward.
type Credential struct {
	Kind Kind
	// Value: the session_token cookie's whole value, the bearer token, or the key.
	Value string
	// CookieName is the session_token cookie's name (for SessionCookie).
	CookieName string
	// ForwardedFor is the client address, sent as X-Forwarded-For so that Better
	// Auth's rate limit counts clients, not extauthz.
	ForwardedFor string
}

// Session is what get-session answered for a valid credential.
type Session struct {
	// Claims are the user's fields, with sub (the user's id) and sid (the
	// session's id), as a policy reads them.
	Claims    map[string]any
	ExpiresAt time.Time
}

// Config configures a Verifier for one issuer.
type Config struct {
	// Issuer labels logs; URL is its get-session endpoint. Both required.
	Issuer, URL   string
	AllowInsecure bool
	// PositiveTTL and NegativeTTL bound how long an answer is reused (defaults
	// 10 s); APIKeyTTL is the positive TTL of API keys (0: every check asks, as
	// each use counts against the key's quota).
	PositiveTTL, NegativeTTL, APIKeyTTL time.Duration
	// Timeout of one call (DefaultTimeout); Concurrency caps calls in flight
	// (DefaultConcurrency).
	Timeout     time.Duration
	Concurrency int
	Client      *http.Client
	Log         *slog.Logger
	Now         func() time.Time
}

// Verifier checks credentials against one issuer's get-session.
type Verifier struct {
	cfg   Config
	sem   chan struct{}
	group singleflight.Group
	mu    sync.Mutex
	cache map[[32]byte]entry
}

type entry struct {
	s     *Session
	err   error
	until time.Time
}

// New validates cfg.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.URL == "" {
		return nil, errors.New("online: issuer and get-session URL are required")
	}
	if err := jwksurl.Check(cfg.URL, cfg.AllowInsecure); err != nil {
		return nil, fmt.Errorf("get-session: %w", err)
	}
	if cfg.PositiveTTL <= 0 {
		cfg.PositiveTTL = DefaultPositiveTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: tracing.Transport(nil), CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("get-session does not redirect") // the credential must go nowhere else
		}}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), cache: map[[32]byte]entry{}}, nil
}

// Check returns the session behind c, or a *reason.Error: session_revoked-like
// answers are token_expired (no session), failures session_unavailable.
func (v *Verifier) Check(ctx context.Context, c Credential) (*Session, error) {
	key := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%s", c.Kind, c.CookieName, c.Value)))
	now := v.cfg.Now()
	v.mu.Lock()
	e, ok := v.cache[key]
	v.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.s, e.err
	}
	out, _, _ := v.group.Do(string(key[:]), func() (any, error) {
		s, ttl, err := v.call(ctx, c)
		if ttl > 0 {
			v.mu.Lock()
			if len(v.cache) >= maxCached {
				v.cache = map[[32]byte]entry{}
			}
			v.cache[key] = entry{s, err, v.cfg.Now().Add(ttl)}
			v.mu.Unlock()
		}
		return entry{s: s, err: err}, nil
	})
	e = out.(entry)
	return e.s, e.err
}

// call asks get-session once and says for how long the answer may be reused.
func (v *Verifier) call(ctx context.Context, c Credential) (*Session, time.Duration, error) {
	// The call serves every check waiting on it: it must not end with the first
	// caller's request, only with its own timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.Timeout)
	defer cancel()
	select {
	case v.sem <- struct{}{}:
		defer func() { <-v.sem }()
	case <-ctx.Done():
		return nil, 0, reason.Errorf(reason.SessionUnavailable, "too many get-session calls in flight")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.URL, nil)
	if err != nil {
		return nil, 0, reason.Wrap(reason.SessionUnavailable, "get-session request", err)
	}
	ttl := v.cfg.PositiveTTL
	switch c.Kind {
	case SessionCookie:
		req.Header.Set("Cookie", c.CookieName+"="+c.Value)
	case BearerSession:
		req.Header.Set("Authorization", "Bearer "+c.Value)
	case APIKey:
		req.Header.Set("X-Api-Key", c.Value)
		ttl = v.cfg.APIKeyTTL
	}
	if c.ForwardedFor != "" {
		req.Header.Set("X-Forwarded-For", c.ForwardedFor)
	}
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		// Not cached: the next check asks again (with singleflight, one at a time).
		return nil, 0, reason.Errorf(reason.SessionUnavailable, "get-session of %s unreachable", v.cfg.Issuer)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, reason.Errorf(reason.SessionUnavailable, "get-session of %s answered %d", v.cfg.Issuer, resp.StatusCode)
	}
	var body struct {
		Session map[string]any `json:"session"`
		User    map[string]any `json:"user"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&body); err != nil {
		return nil, 0, reason.Wrap(reason.SessionUnavailable, "get-session answer", err)
	}
	if body.Session == nil || body.User == nil {
		// Better Auth answers null for a credential it does not know: a real "no",
		// cached for the negative TTL.
		return nil, v.cfg.NegativeTTL, reason.Errorf(reason.TokenExpired, "no session for this credential")
	}
	s, err := session(body.Session, body.User, v.cfg.Now())
	if err != nil {
		return nil, v.cfg.NegativeTTL, err
	}
	if until := s.ExpiresAt.Sub(v.cfg.Now()); until < ttl {
		ttl = until
	}
	return s, ttl, nil
}

func session(sess, user map[string]any, now time.Time) (*Session, error) {
	id, _ := user["id"].(string)
	sid, _ := sess["id"].(string)
	ends, _ := sess["expiresAt"].(string)
	until, err := time.Parse(time.RFC3339Nano, ends)
	switch {
	case id == "" || sid == "":
		return nil, reason.Errorf(reason.TokenMalformed, "get-session answer without user or session id")
	case err != nil:
		return nil, reason.Errorf(reason.TokenMalformed, "get-session answer without a readable expiresAt")
	case !now.Before(until):
		return nil, reason.Errorf(reason.TokenExpired, "the session ended")
	}
	claims := make(map[string]any, len(user)+2)
	for k, v := range user {
		claims[k] = v
	}
	claims["sub"], claims["sid"] = id, sid
	return &Session{Claims: claims, ExpiresAt: until}, nil
}
