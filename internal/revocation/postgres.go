package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// Defaults for the zero values of PostgresConfig.
const (
	DefaultPositiveTTL = 2 * time.Second
	DefaultMaxConns    = 4
	// errorTTL is how long a failed query's answer is reused, so that a database
	// outage costs one query per session per second, not one per request.
	errorTTL = time.Second
	// maxCached bounds the remembered answers; past it they are forgotten at once.
	maxCached = 200_000
)

// PostgresConfig is the direct-database alternative to a feed, for deployments
// that cannot add the plugin: the session row of the token's sid is read from
// Better Auth's own database.
type PostgresConfig struct {
	// Issuer labels logs; required.
	Issuer string
	// DSNFile holds a postgres:// URL (with a read-only role); required.
	DSNFile string
	// SessionTable and UserTable are Better Auth's tables ("session", "user").
	SessionTable, UserTable string
	// PositiveTTL is how long a live session is taken as live without asking again
	// (DefaultPositiveTTL, at most 2s). A revoked one is remembered until the token
	// expires: a deleted session does not come back.
	PositiveTTL time.Duration
	// FailOpen allows tokens while the database cannot be read.
	FailOpen bool
	MaxConns int32
	Log      *slog.Logger
	Now      func() time.Time
}

// Postgres checks sessions and bans in Better Auth's database, with caches.
type Postgres struct {
	cfg   PostgresConfig
	pool  *pgxpool.Pool
	query string
	known bool // the columns were learnt (see learnColumns)
	group singleflight.Group
	mu    sync.Mutex
	cache map[string]answer
}

type answer struct {
	code   reason.Code
	detail string
	until  time.Time
}

// NewPostgres connects (lazily: the pool dials on first use) and learns whether the
// user table has the admin plugin's ban columns.
func NewPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.Issuer == "" || cfg.DSNFile == "" {
		return nil, errors.New("revocation postgres: issuer and dsnFile are required")
	}
	b, err := os.ReadFile(cfg.DSNFile)
	if err != nil {
		return nil, fmt.Errorf("revocation postgres dsnFile: %w", err)
	}
	pc, err := pgxpool.ParseConfig(strings.TrimSpace(string(b)))
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("revocation postgres: dsnFile does not hold a valid connection string")
	}
	if cfg.SessionTable == "" {
		cfg.SessionTable = "session"
	}
	if cfg.UserTable == "" {
		cfg.UserTable = "user"
	}
	if cfg.PositiveTTL <= 0 || cfg.PositiveTTL > DefaultPositiveTTL {
		cfg.PositiveTTL = DefaultPositiveTTL
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("revocation postgres: %w", err)
	}
	p := &Postgres{cfg: cfg, pool: pool, cache: map[string]answer{}}
	p.learnColumns(ctx)
	return p, nil
}

// learnColumns finds whether the user table has the admin plugin's ban columns and
// builds the query; when the database cannot be asked, it is asked again at the
// next lookup (until then, the query reads no bans).
func (p *Postgres) learnColumns(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name IN ('banned', 'banExpires')`, p.cfg.UserTable).Scan(&n)
	if err != nil {
		p.cfg.Log.Warn("revocation postgres: could not read the user table's columns yet", "issuer", p.cfg.Issuer, "error", err.Error())
	}
	sess, user := pgx.Identifier{p.cfg.SessionTable}.Sanitize(), pgx.Identifier{p.cfg.UserTable}.Sanitize()
	ban := `false, NULL::timestamptz`
	if n == 2 {
		ban = `coalesce(u."banned", false), u."banExpires"`
	}
	q := `SELECT s."expiresAt", ` + ban + ` FROM ` + sess + ` s JOIN ` + user + ` u ON u."id" = s."userId" WHERE s."id" = $1`
	p.mu.Lock()
	p.query, p.known = q, err == nil
	p.mu.Unlock()
}

// Close closes the connections.
func (p *Postgres) Close() { p.pool.Close() }

// Check reads (or remembers) the session sid: gone or ended is session_revoked,
// a banned user is user_banned, an unreadable database revocation_unavailable
// unless FailOpen. A token without sid is left to the requireSession setting.
func (p *Postgres) Check(sid, _ string, _, exp time.Time) (reason.Code, string) {
	if sid == "" {
		return "", ""
	}
	now := p.cfg.Now()
	p.mu.Lock()
	a, ok := p.cache[sid]
	p.mu.Unlock()
	if ok && now.Before(a.until) {
		return a.code, a.detail
	}
	v, _, _ := p.group.Do(sid, func() (any, error) { return p.lookup(sid, now, exp), nil })
	a = v.(answer)
	return a.code, a.detail
}

func (p *Postgres) lookup(sid string, now, exp time.Time) answer {
	p.mu.Lock()
	known := p.known
	p.mu.Unlock()
	if !known {
		p.learnColumns(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.mu.Lock()
	query := p.query
	p.mu.Unlock()
	var expiresAt time.Time
	var banned bool
	var banExpires *time.Time
	err := p.pool.QueryRow(ctx, query, sid).Scan(&expiresAt, &banned, &banExpires)
	var a answer
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		a = answer{reason.SessionRevoked, "the token's session is not in the database", exp}
	case err != nil:
		p.cfg.Log.Warn("revocation postgres: query failed", "issuer", p.cfg.Issuer, "error", err.Error())
		a = answer{until: now.Add(errorTTL)}
		if !p.cfg.FailOpen {
			a.code, a.detail = reason.RevocationUnavailable, "Better Auth's database cannot be read"
		}
	case !expiresAt.After(now):
		a = answer{reason.SessionRevoked, "the token's session has ended", exp}
	case banned && (banExpires == nil || banExpires.After(now)):
		a = answer{reason.UserBanned, "the database says the user is banned", now.Add(p.cfg.PositiveTTL)}
	default:
		a = answer{until: now.Add(p.cfg.PositiveTTL)}
	}
	p.mu.Lock()
	if len(p.cache) >= maxCached {
		p.cache = map[string]answer{}
	}
	p.cache[sid] = a
	p.mu.Unlock()
	return a
}
