// Package tokentest mints keys, JWKS documents and Better-Auth-shaped tokens for
// tests, the way net/http/httptest serves HTTP for them. Production code never
// imports it.
package tokentest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Key is a signing key with its public JWK.
type Key struct {
	KID     string
	Alg     jwa.SignatureAlgorithm
	private any
	public  jwk.Key
}

var rsaOnce sync.Once
var rsaKey *rsa.PrivateKey

// NewKey generates a key for alg with the given kid. RSA keys are generated once
// per process (2048-bit generation is slow) and shared by RS* and PS*.
func NewKey(alg jwa.SignatureAlgorithm, kid string) *Key {
	var priv, pub any
	switch alg {
	case jwa.EdDSA:
		p, s, err := ed25519.GenerateKey(rand.Reader)
		must(err)
		priv, pub = s, p
	case jwa.ES256, jwa.ES384, jwa.ES512:
		curve := map[jwa.SignatureAlgorithm]elliptic.Curve{jwa.ES256: elliptic.P256(), jwa.ES384: elliptic.P384(), jwa.ES512: elliptic.P521()}[alg]
		s, err := ecdsa.GenerateKey(curve, rand.Reader)
		must(err)
		priv, pub = s, &s.PublicKey
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		rsaOnce.Do(func() {
			var err error
			rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
			must(err)
		})
		priv, pub = rsaKey, &rsaKey.PublicKey
	default:
		panic("tokentest: unsupported alg " + alg.String())
	}
	j, err := jwk.FromRaw(pub)
	must(err)
	must(j.Set(jwk.KeyIDKey, kid))
	must(j.Set(jwk.AlgorithmKey, alg))
	return &Key{KID: kid, Alg: alg, private: priv, public: j}
}

// PublicJWK returns the key's public JWK as a JSON-ready map.
func (k *Key) PublicJWK() map[string]any {
	b, err := json.Marshal(k.public)
	must(err)
	var m map[string]any
	must(json.Unmarshal(b, &m))
	return m
}

// JWKS returns a JWKS document with the public halves of keys, in order.
func JWKS(keys ...*Key) []byte {
	out := struct {
		Keys []map[string]any `json:"keys"`
	}{Keys: []map[string]any{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, k.PublicJWK())
	}
	b, err := json.Marshal(out)
	must(err)
	return b
}

// Claims returns Better Auth's claim set for a user, issued now by issuer and
// valid for 15 minutes, as the jwt plugin with a uuid definePayload hook makes it.
func Claims(issuer, sub, uuid string, now time.Time) map[string]any {
	return map[string]any{
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
		"iss": issuer, "aud": issuer, "sub": sub, "id": sub, "uuid": uuid,
		"name": "Test User", "email": sub + "@example.test", "emailVerified": false, "image": nil,
	}
}

// Sign signs claims with k as a compact JWS with header {"alg","kid"} (no typ, like
// Better Auth). extraHeader entries are added to the protected header.
func (k *Key) Sign(claims map[string]any, extraHeader map[string]any) string {
	payload, err := json.Marshal(claims)
	must(err)
	hdr := jws.NewHeaders()
	must(hdr.Set(jws.KeyIDKey, k.KID))
	for name, v := range extraHeader {
		must(hdr.Set(name, v))
	}
	out, err := jws.Sign(payload, jws.WithKey(k.Alg, k.private, jws.WithProtectedHeaders(hdr)))
	must(err)
	return string(out)
}

// SignRaw signs the given header and payload JSON exactly as written, for tokens no
// JSON encoder would produce (duplicate members, odd spellings, deep nesting).
func (k *Key) SignRaw(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	signer, err := jws.NewSigner(k.Alg)
	must(err)
	sig, err := signer.Sign([]byte(input), k.private)
	must(err)
	return input + "." + enc(sig)
}

// Forge builds a compact token from an arbitrary header and claims with the given
// raw signature bytes: for alg=none, alg confusion and malformed-token tests.
func Forge(header, claims map[string]any, sig []byte) string {
	h, err := json.Marshal(header)
	must(err)
	c, err := json.Marshal(maps.Clone(claims))
	must(err)
	enc := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf("%s.%s.%s", enc(h), enc(c), enc(sig))
}

func must(err error) {
	if err != nil {
		panic("tokentest: " + err.Error())
	}
}

// JWK returns the public key as a jwk.Key (for a forged "jwk" header).
func (k *Key) JWK() jwk.Key { return k.public }

// Clock is a settable time source for code that takes a `func() time.Time`.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// JWKSServer serves a JWKS document (or any body, to test bad ones) over HTTP on
// loopback and counts the requests it answers.
type JWKSServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int64
}

// NewJWKSServer serves body with status 200 until the test ends.
func NewJWKSServer(t testing.TB, body []byte) *JWKSServer {
	s := StartJWKSServer(body)
	t.Cleanup(s.Close)
	return s
}

// StartJWKSServer is NewJWKSServer for code without a testing.TB (a TestMain, a
// benchmark command); the caller closes it.
func StartJWKSServer(body []byte) *JWKSServer {
	s := &JWKSServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	return s
}

// Set changes what the server answers from now on.
func (s *JWKSServer) Set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// Hits returns how many requests the server has answered.
func (s *JWKSServer) Hits() int64 { return s.hits.Load() }
