package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Postgres is a throwaway PostgreSQL server.
type Postgres struct {
	// URL is a connection string for the postgres superuser (trust auth, loopback only).
	URL  string
	Proc *Proc
	bin  string
	port int
}

// StartPostgres initialises a data directory under dir and starts PostgreSQL on a
// free loopback port. initdb and postgres refuse to run as root, so as root they run
// as the postgres user, in a folder it owns.
func StartPostgres(t Tools, dir string) (*Postgres, error) {
	if t.PGBin == "" {
		return nil, fmt.Errorf("E2E_PGBIN is not set")
	}
	pgdir := filepath.Join(dir, "postgres")
	if err := os.MkdirAll(pgdir, 0o700); err != nil {
		return nil, err
	}
	asPG := func(argv ...string) []string { return argv }
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", pgdir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown: %v: %s", err, out)
		}
		// The postgres user must be able to reach the folder.
		for d := filepath.Dir(pgdir); d != "/" && d != "."; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, fi.Mode().Perm()|0o011)
			}
		}
		asPG = func(argv ...string) []string { return append([]string{"runuser", "-u", "postgres", "--"}, argv...) }
	}
	data := filepath.Join(pgdir, "data")
	if _, err := Run(context.Background(), pgdir, nil, asPG(filepath.Join(t.PGBin, "initdb"), "-D", data, "--auth=trust", "-U", "postgres", "--no-sync")...); err != nil {
		return nil, err
	}
	port := FreePort()
	p, err := Start(pgdir, "postgres", nil, asPG(filepath.Join(t.PGBin, "postgres"), "-D", data,
		"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-k", pgdir, "-c", "fsync=off")...)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", port), Proc: p, bin: t.PGBin, port: port}
	if err := WaitTCP(p, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	// Accepting TCP is not yet accepting queries: wait for a query to work.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := pg.Query("SELECT 1"); err == nil {
			return pg, nil
		} else if time.Now().After(deadline) {
			p.Stop()
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Query runs SQL with psql and returns the unaligned, tuples-only output.
func (pg *Postgres) Query(sql string) (string, error) {
	return Run(context.Background(), "", nil, filepath.Join(pg.bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", fmt.Sprint(pg.port), "-U", "postgres", "-c", sql)
}

// StartExampleBetterAuth migrates pg the way examples/better-auth says (migrate.ts,
// compiled: Better Auth's tables, then schema.sql) and serves the example on a free
// port.
func StartExampleBetterAuth(t Tools, dir string, pg *Postgres) (*BetterAuth, error) {
	if t.ExampleBetterAuthBuild == "" {
		return nil, fmt.Errorf("E2E_EXAMPLE_BETTERAUTH is not set")
	}
	port := FreePort()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	const feedSecret = "e2e-feed-secret-0123456789abcdef0123456789"
	secretFile := filepath.Join(dir, "feed-secret")
	if err := os.WriteFile(secretFile, []byte(feedSecret+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := []string{"DATABASE_URL=" + pg.URL, "BETTER_AUTH_URL=" + url, "BETTER_AUTH_SECRET=e2e-secret-0123456789abcdef0123456789",
		"EXTAUTHZ_FEED_SECRET=" + feedSecret, "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port)}
	dist := filepath.Join(t.ExampleBetterAuthBuild, "dist")
	if _, err := Run(context.Background(), t.ExampleBetterAuthBuild, env, t.Node, filepath.Join(dist, "migrate.js")); err != nil {
		return nil, fmt.Errorf("example migration: %w", err)
	}
	p, err := Start(dir, "example-better-auth", env, t.Node, filepath.Join(dist, "server.js"))
	if err != nil {
		return nil, err
	}
	if err := WaitHTTP(p, url+"/healthz", 200, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return &BetterAuth{URL: url, Proc: p, FeedSecretFile: secretFile}, nil
}
