package reload_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

type issuer struct {
	url  string
	key  *tokentest.Key
	jwks *tokentest.JWKSServer
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{key: tokentest.NewKey(jwa.EdDSA, fmt.Sprintf("k-%d", time.Now().UnixNano()))}
	is.jwks = tokentest.NewJWKSServer(t, tokentest.JWKS(is.key))
	is.url = is.jwks.URL
	return is
}

func (is *issuer) token() string {
	return is.key.Sign(tokentest.Claims(is.url, "u", "6639900d-cfe5-59ec-bd5c-e0e68598457e", time.Now()), nil)
}

func newReloader(t *testing.T) (*reload.Reloader, *engine.Engine, *metrics.Recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := engine.New(engine.Config{Metrics: m, Log: log})
	r, err := reload.New(reload.Config{Engine: e, Pool: jwkscache.NewPool(ctx, jwkscache.PoolConfig{Metrics: m}), Metrics: m, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return r, e, m
}

func policyDoc(publicA bool, issuers ...*issuer) string {
	doc := "issuers:\n"
	for _, is := range issuers {
		doc += "  - betterAuthURL: " + is.url + "\n"
	}
	if publicA {
		doc += "rules: [{name: a, paths: [/a], public: true}]\n"
	} else {
		doc += "rules: [{name: a, paths: [/a]}]\n"
	}
	return doc
}

func decide(e *engine.Engine, tok string) engine.Decision {
	req := &engine.Request{Method: "GET", Host: "api.example.com", Path: "/a"}
	if tok != "" {
		req.Authorization = []string{"Bearer " + tok}
	}
	return e.Decide(context.Background(), req)
}

func TestApplyRejectsAndKeepsOld(t *testing.T) {
	r, e, m := newReloader(t)
	is := newIssuer(t)
	if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(policyDoc(true, is))}); out.Result != reload.Applied || out.Err != nil {
		t.Fatalf("first apply: %+v", out)
	}
	if !e.Ready() || !decide(e, "").Allow {
		t.Fatal("policy 1 not in force")
	}
	hash := r.Hash()
	for _, bad := range []string{"issuers: [", "issuers: []", policyDoc(true, is) + "rules: []\n", policyDoc(true, is) + "bogus: 1\n",
		"issuers: [{betterAuthURL: " + is.url + "}]\nrules: [{name: a, paths: [/a], when: 'claims.x ==='}]\n"} {
		if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(bad)}); out.Result != reload.Rejected || out.Err == nil {
			t.Fatalf("bad policy %q: %+v", bad, out)
		}
	}
	if r.Hash() != hash || !decide(e, "").Allow {
		t.Fatal("a rejected policy changed the policy in force")
	}
	if n := testutil.ToFloat64(m.PolicyReloadCounter("test", "rejected")); n != 5 {
		t.Fatalf("rejected count %v, want 5", n)
	}
	if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(policyDoc(true, is))}); out.Result != reload.Unchanged {
		t.Fatalf("same document again: %+v", out)
	}
}

// TestNewIssuerHasKeysAtSwap: a policy that adds an issuer is swapped in only after
// that issuer's keys are fetched, and the issuer the policies share keeps its cache.
func TestIssuerChanges(t *testing.T) {
	r, e, _ := newReloader(t)
	a, b := newIssuer(t), newIssuer(t)
	if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(policyDoc(false, a))}); out.Err != nil {
		t.Fatal(out.Err)
	}
	if d := decide(e, a.token()); !d.Allow {
		t.Fatalf("issuer a: %+v", d)
	}
	aHits := a.jwks.Hits()
	if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(policyDoc(false, a, b))}); out.Err != nil {
		t.Fatal(out.Err)
	}
	// No window: b's token verifies the moment Apply returns.
	if d := decide(e, b.token()); !d.Allow {
		t.Fatalf("new issuer b right after the swap: %+v", d)
	}
	if d := decide(e, a.token()); !d.Allow || a.jwks.Hits() != aHits {
		t.Fatalf("shared issuer a: %+v, fetches %d -> %d (its cache should be reused)", d, aHits, a.jwks.Hits())
	}
	// Dropping a: its tokens are now from an unknown issuer.
	if out := r.Apply(context.Background(), reload.Update{Source: "test", Doc: []byte(policyDoc(false, b))}); out.Err != nil {
		t.Fatal(out.Err)
	}
	if d := decide(e, a.token()); d.Allow || d.Reason != "issuer_mismatch" {
		t.Fatalf("removed issuer a: %+v", d)
	}
}

// kubeletWrite lays out dir the way kubelet mounts a ConfigMap: the file is a
// symlink through ..data, and an update swaps ..data atomically.
func kubeletWrite(t *testing.T, dir, content string, gen int) {
	t.Helper()
	ts := filepath.Join(dir, fmt.Sprintf("..2026_11_27_00_00_%02d.%d", gen, gen))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "policy.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if gen == 1 {
		if err := os.Symlink("..data/policy.yaml", filepath.Join(dir, "policy.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}

func TestFileSourceFollowsKubeletSwap(t *testing.T) {
	r, e, m := newReloader(t)
	is := newIssuer(t)
	dir := t.TempDir()
	kubeletWrite(t, dir, policyDoc(true, is), 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, mustFile(t, filepath.Join(dir, "policy.yaml"))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("file source: %v", err)
		}
	}()
	testkit.Eventually(t, "policy in force", 5*time.Second, func() bool { return decide(e, "").Allow })
	start := time.Now()
	kubeletWrite(t, dir, policyDoc(false, is), 2)
	testkit.Eventually(t, "policy in force", 5*time.Second, func() bool { return !decide(e, "").Allow })
	t.Logf("kubelet-style swap applied after %s", time.Since(start).Round(time.Millisecond))

	kubeletWrite(t, dir, "issuers: [{betterAuthURL: not a url}]", 3)
	testkit.Eventually(t, "policy in force", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.PolicyReloadCounter("file:"+filepath.Join(dir, "policy.yaml"), "rejected")) == 1
	})
	if decide(e, "").Allow {
		t.Fatal("invalid update changed decisions")
	}
	// A plain in-place write (an editor, `extauthz serve --config` on a laptop) works too.
	kubeletWrite(t, dir, policyDoc(true, is), 4)
	testkit.Eventually(t, "policy in force", 5*time.Second, func() bool { return decide(e, "").Allow })
}

// TestSources: what each source does with a document it cannot use.
func TestSources(t *testing.T) {
	r, e, m := newReloader(t)
	is := newIssuer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A fixed document that is refused can never be fixed: Run fails, so serve exits.
	if err := r.Run(ctx, reload.Static{Name: "env:TEST", Doc: []byte("issuers: [")}); err == nil {
		t.Fatal("a refused static document did not fail the source")
	}
	// A directory that cannot be watched fails the file source at once.
	if err := r.Run(ctx, mustFile(t, filepath.Join(t.TempDir(), "missing", "policy.yaml"))); err == nil {
		t.Fatal("an unwatchable file did not fail the source")
	}
	// A source's own failure is a rejection like a bad document: counted, old policy kept.
	r.Apply(ctx, reload.Update{Source: "test", Doc: []byte(policyDoc(true, is))})
	out := r.Apply(ctx, reload.Update{Source: "test", Err: os.ErrNotExist})
	if out.Result != reload.Rejected || out.Hash != r.Hash() || !decide(e, "").Allow {
		t.Fatalf("source error: %+v", out)
	}
	if n := testutil.ToFloat64(m.PolicyReloadCounter("test", "rejected")); n != 1 {
		t.Fatalf("rejected count %v, want 1", n)
	}
	// A good static document is applied, and Run then waits for ctx.
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(sctx, reload.Static{Name: "env:TEST", Doc: []byte(policyDoc(false, is))}) }()
	testkit.Eventually(t, "policy in force", 5*time.Second, func() bool { return !decide(e, "").Allow })
	scancel()
	if err := <-done; err != nil {
		t.Fatalf("static source: %v", err)
	}
}

func mustFile(t *testing.T, path string) *reload.File {
	t.Helper()
	f, err := reload.NewFile(reload.FileConfig{Path: path, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return f
}
