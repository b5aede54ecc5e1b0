package revocation

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval = time.Second
	DefaultMaxStale     = 30 * time.Second
	// DefaultRetention is how long a session or user revocation is kept: longer
	// than any Better Auth JWT lives (15 minutes by default).
	DefaultRetention = time.Hour
	// MaxPageSize bounds one feed response.
	MaxPageSize = 8 << 20
)

// Config describes one issuer's revocation feed.
type Config struct {
	// Issuer labels metrics and logs; required.
	Issuer string
	// URL of the feed (Better Auth's /api/auth/extauthz/revocations); required,
	// https unless loopback or AllowInsecure.
	URL           string
	AllowInsecure bool
	// SecretFile holds the shared secret sent as a Bearer token; required.
	SecretFile string
	// PollInterval between polls (DefaultPollInterval).
	PollInterval time.Duration
	// MaxStale: when the last good poll is older, the issuer's tokens are denied
	// revocation_unavailable, unless FailOpen (DefaultMaxStale).
	MaxStale time.Duration
	FailOpen bool
	// Retention of session and user entries (DefaultRetention).
	Retention time.Duration
	Client    *http.Client
	Metrics   *metrics.Recorder
	// Log defaults to slog.Default(); Now to time.Now.
	Log *slog.Logger
	Now func() time.Time
}

// Feed keeps one issuer's revocations fresh by polling.
type Feed struct {
	cfg   Config
	state atomic.Pointer[State]
	// good is the Unix nanoseconds of the last successful poll (0: none yet).
	good   atomic.Int64
	cursor string
	ready  chan struct{}
	once   sync.Once
	stop   context.CancelFunc
	done   chan struct{}
}

// New validates cfg and reads the secret; it polls nothing yet.
func New(cfg Config) (*Feed, error) {
	if cfg.Issuer == "" || cfg.URL == "" || cfg.SecretFile == "" {
		return nil, errors.New("revocation: issuer, feed URL and secretFile are required")
	}
	if err := jwksurl.Check(cfg.URL, cfg.AllowInsecure); err != nil {
		return nil, fmt.Errorf("revocation feed: %w", err)
	}
	if _, err := readSecret(cfg.SecretFile); err != nil {
		return nil, err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultMaxStale
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second, Transport: tracing.Transport(nil), CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the revocation feed does not redirect") // the secret must go nowhere else
		}}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Feed{cfg: cfg, ready: make(chan struct{}), done: make(chan struct{})}
	f.state.Store(NewState(nil))
	return f, nil
}

// readSecret reads the shared secret; it is read again for every poll, so that a
// rotated Secret (a new file content, as kubelet writes it) takes effect at once.
func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("revocation secret: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < 32 {
		return "", errors.New("revocation secret: want at least 32 characters")
	}
	return secret, nil
}

// Start polls in the background until ctx ends or Stop.
func (f *Feed) Start(ctx context.Context) {
	ctx, f.stop = context.WithCancel(ctx)
	go f.loop(ctx)
}

// Stop ends polling and waits for it.
func (f *Feed) Stop() {
	if f.stop != nil {
		f.stop()
		<-f.done
	}
}

// Ready is closed once the first poll has finished, whether it succeeded or not.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

func (f *Feed) loop(ctx context.Context) {
	defer close(f.done)
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	for {
		result := f.poll(ctx)
		f.cfg.Metrics.RevocationPoll(f.cfg.Issuer, result, f.age(), f.state.Load().Len())
		f.once.Do(func() { close(f.ready) })
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// page is one feed response.
type page struct {
	Cursor  string  `json:"cursor"`
	Entries []Entry `json:"entries"`
	// More says another page follows at once.
	More bool `json:"more"`
}

// poll fetches what is new, following "more" a bounded number of times, and
// says "ok" or "error".
func (f *Feed) poll(ctx context.Context) string {
	for range 16 { // bounded catch-up after an outage
		p, err := f.fetch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				f.cfg.Log.Warn("revocation feed poll failed", "issuer", f.cfg.Issuer, "feed", jwksurl.Redact(f.cfg.URL), "error", err.Error())
			}
			return "error"
		}
		if p.More && p.Cursor == f.cursor {
			// A full page that does not move the cursor: what follows it cannot be
			// read, so the feed counts as failing (and, past maxStale, fails closed).
			f.cfg.Log.Error("revocation feed: a full page without progress", "issuer", f.cfg.Issuer)
			return "error"
		}
		drop := f.cfg.Now().Add(-f.cfg.Retention).UnixMilli()
		f.state.Store(f.state.Load().With(p.Entries, drop))
		f.cursor = p.Cursor
		f.good.Store(f.cfg.Now().UnixNano())
		if !p.More {
			return "ok"
		}
	}
	return "ok"
}

func (f *Feed) fetch(ctx context.Context) (*page, error) {
	u, err := url.Parse(f.cfg.URL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("since", f.cursor)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	secret, err := readSecret(f.cfg.SecretFile)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return nil, errors.New("feed unreachable") // the error quotes the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("feed answered %d", resp.StatusCode)
	}
	var p page
	body := &countingReader{r: io.LimitReader(resp.Body, MaxPageSize)}
	if err := json.NewDecoder(body).Decode(&p); err != nil {
		if body.n >= MaxPageSize {
			return nil, fmt.Errorf("feed response exceeds %d bytes", MaxPageSize)
		}
		return nil, fmt.Errorf("feed response: %w", err)
	}
	return &p, nil
}

// age is the time since the last good poll, or -1 before the first.
func (f *Feed) age() time.Duration {
	g := f.good.Load()
	if g == 0 {
		return -1
	}
	return f.cfg.Now().Sub(time.Unix(0, g))
}

// Check says whether a token of user for session sid, issued at iat, may be used:
// "" when it may, a reason when it is revoked, or revocation_unavailable when the
// feed has been stale for longer than MaxStale (unless FailOpen).
func (f *Feed) Check(sid, user string, iat, _ time.Time) (reason.Code, string) {
	now := f.cfg.Now()
	if g := f.good.Load(); g == 0 || now.Sub(time.Unix(0, g)) > f.cfg.MaxStale {
		if !f.cfg.FailOpen {
			return reason.RevocationUnavailable, "the revocation feed of " + f.cfg.Issuer + " has not answered within maxStale"
		}
	}
	return f.state.Load().Check(sid, user, iat, now)
}

// SecretMatches compares a presented secret with the expected one in constant
// time; for servers of the feed written in Go (tests, a sidecar).
func SecretMatches(got, want string) bool {
	return len(want) > 0 && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
