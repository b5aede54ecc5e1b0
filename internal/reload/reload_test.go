package reload_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

type issuer struct {
	url  string
	key  *tokentest.Key
	hits atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{key: tokentest.NewKey(jwa.EdDSA, fmt.Sprintf("k-%d", time.Now().UnixNano()))}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.hits.Add(1)
		w.Write(tokentest.JWKS(is.key))
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

func (is *issuer) token() string {
	return is.key.Sign(tokentest.Claims(is.url, "u", "6639900d-cfe5-59ec-bd5c-e0e68598457e", time.Now()), nil)
}

func newReloader(t *testing.T) (*reload.Reloader, *engine.Engine, *metrics.Set) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := engine.New(m, log)
	return &reload.Reloader{Engine: e, Pool: jwkscache.NewPool(ctx, m), Metrics: m, Log: log}, e, m
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
	if res, _, err := r.Apply(context.Background(), "test", []byte(policyDoc(true, is))); res != reload.Applied || err != nil {
		t.Fatalf("first apply: %v %v", res, err)
	}
	if !e.Ready() || !decide(e, "").Allow {
		t.Fatal("policy 1 not in force")
	}
	hash := r.Hash()
	for _, bad := range []string{"issuers: [", "issuers: []", policyDoc(true, is) + "rules: []\n", policyDoc(true, is) + "bogus: 1\n",
		"issuers: [{betterAuthURL: " + is.url + "}]\nrules: [{name: a, paths: [/a], when: 'claims.x ==='}]\n"} {
		if res, _, err := r.Apply(context.Background(), "test", []byte(bad)); res != reload.Rejected || err == nil {
			t.Fatalf("bad policy %q: %v %v", bad, res, err)
		}
	}
	if r.Hash() != hash || !decide(e, "").Allow {
		t.Fatal("a rejected policy changed the policy in force")
	}
	if n := testutil.ToFloat64(m.PolicyReloadCounter("test", "rejected")); n != 5 {
		t.Fatalf("rejected count %v, want 5", n)
	}
	if res, _, _ := r.Apply(context.Background(), "test", []byte(policyDoc(true, is))); res != reload.Unchanged {
		t.Fatalf("same document again: %v", res)
	}
}

// TestNewIssuerHasKeysAtSwap: a policy that adds an issuer is swapped in only after
// that issuer's keys are fetched, and the issuer the policies share keeps its cache.
func TestIssuerChanges(t *testing.T) {
	r, e, _ := newReloader(t)
	a, b := newIssuer(t), newIssuer(t)
	if _, _, err := r.Apply(context.Background(), "test", []byte(policyDoc(false, a))); err != nil {
		t.Fatal(err)
	}
	if d := decide(e, a.token()); !d.Allow {
		t.Fatalf("issuer a: %+v", d)
	}
	aHits := a.hits.Load()
	if _, _, err := r.Apply(context.Background(), "test", []byte(policyDoc(false, a, b))); err != nil {
		t.Fatal(err)
	}
	// No window: b's token verifies the moment Apply returns.
	if d := decide(e, b.token()); !d.Allow {
		t.Fatalf("new issuer b right after the swap: %+v", d)
	}
	if d := decide(e, a.token()); !d.Allow || a.hits.Load() != aHits {
		t.Fatalf("shared issuer a: %+v, fetches %d -> %d (its cache should be reused)", d, aHits, a.hits.Load())
	}
	// Dropping a: its tokens are now from an unknown issuer.
	if _, _, err := r.Apply(context.Background(), "test", []byte(policyDoc(false, b))); err != nil {
		t.Fatal(err)
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

func TestWatchFileFollowsKubeletSwap(t *testing.T) {
	r, e, m := newReloader(t)
	is := newIssuer(t)
	dir := t.TempDir()
	kubeletWrite(t, dir, policyDoc(true, is), 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.WatchFile(ctx, filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	if !decide(e, "").Allow {
		t.Fatal("initial policy not applied")
	}
	start := time.Now()
	kubeletWrite(t, dir, policyDoc(false, is), 2)
	waitFor(t, func() bool { return !decide(e, "").Allow })
	t.Logf("kubelet-style swap applied after %s", time.Since(start).Round(time.Millisecond))

	kubeletWrite(t, dir, "issuers: [{betterAuthURL: not a url}]", 3)
	waitFor(t, func() bool {
		return testutil.ToFloat64(m.PolicyReloadCounter("file:"+filepath.Join(dir, "policy.yaml"), "rejected")) == 1
	})
	if decide(e, "").Allow {
		t.Fatal("invalid update changed decisions")
	}
	// A plain in-place write (an editor, `extauthz serve --config` on a laptop) works too.
	kubeletWrite(t, dir, policyDoc(true, is), 4)
	waitFor(t, func() bool { return decide(e, "").Allow })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("not within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
