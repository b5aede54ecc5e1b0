// Package enginetest builds engines with generated keys for the tests of the
// packages around the engine (front doors, server, benchmarks).
package enginetest

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// New compiles policyDoc and returns an engine whose issuers all trust one
// generated EdDSA key (kid "k1"), with the clock fixed at now, and that key. cache
// may be nil.
func New(t testing.TB, policyDoc string, now time.Time, m *metrics.Recorder, cache *token.Cache) (*engine.Engine, *tokentest.Key) {
	t.Helper()
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	keys, _, err := keyset.Parse(tokentest.JWKS(key))
	if err != nil {
		t.Fatal(err)
	}
	return WithKeys(t, policyDoc, keys, now, m, cache), key
}

// WithKeys is New with the caller's keys for every issuer: a wrapper that fails
// or panics, say.
func WithKeys(t testing.TB, policyDoc string, keys token.KeySource, now time.Time, m *metrics.Recorder, cache *token.Cache) *engine.Engine {
	t.Helper()
	p, err := policy.Load([]byte(policyDoc))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := engine.NewSnapshot(p, engine.SameKeys(keys), token.Config{Cache: cache, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Config{Metrics: m})
	e.Swap(snap)
	return e
}
