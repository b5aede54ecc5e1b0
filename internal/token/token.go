// Package token extracts Bearer tokens from requests and verifies Better Auth JWTs.
//
// Verification follows one fixed order so that every failure maps to exactly one
// reason code: size, compact form, header (alg allow-list, crit), issuer, key by kid,
// algorithm/key agreement, signature, then time and audience claims. Key material
// comes only from the issuer's JWKS: the jku, x5u, jwk and x5c header parameters are
// never looked at.
package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// Limits and defaults.
const (
	// MaxSize bounds a token; Better Auth's are under 1 KiB.
	MaxSize = 8 << 10
	// MaxHeaderSize bounds the decoded JOSE header, which is parsed before the
	// signature is checked; Better Auth's is under 100 bytes ({"alg","kid"}), and
	// a larger bound only lets a forged token cost more before it is refused.
	MaxHeaderSize = 512
	// DefaultLeeway absorbs clock skew between Better Auth and us.
	DefaultLeeway = 30 * time.Second
	// NoLeeway, as Config.Leeway, allows no clock skew at all.
	NoLeeway time.Duration = -1
)

// DefaultAlgorithms is the allow-list used when an issuer names none: every
// algorithm Better Auth's jwt plugin can sign with.
var DefaultAlgorithms = []jwa.SignatureAlgorithm{jwa.EdDSA, jwa.ES256, jwa.ES512, jwa.RS256, jwa.PS256}

// Supported lists every algorithm an issuer may allow. none and HS* are absent on
// purpose: a public JWKS must never be usable as an HMAC secret.
var Supported = []jwa.SignatureAlgorithm{
	jwa.EdDSA, jwa.ES256, jwa.ES384, jwa.ES512,
	jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512,
}

// KeySource finds a public key by kid; *jwkscache.Cache and keyset.Static are.
type KeySource interface {
	// Lookup may fetch (an unknown kid after a rotation).
	Lookup(ctx context.Context, kid string) (*keyset.Key, error)
	// Peek never fetches and takes no lock; nil when the kid is not there.
	Peek(kid string) *keyset.Key
}

// Issuer is what we accept from one Better Auth deployment.
type Issuer struct {
	// Issuer must equal the token's iss exactly.
	Issuer string
	// Audiences: the token's aud must contain at least one.
	Audiences []string
	// Algorithms allowed; empty means DefaultAlgorithms.
	Algorithms []jwa.SignatureAlgorithm
	// Keys supplies verification keys.
	Keys KeySource
}

// Verifier verifies tokens from a fixed set of issuers. It is immutable once built.
type Verifier struct {
	issuers map[string]*issuer
	leeway  time.Duration
	now     func() time.Time
	cache   *Cache
	keep    []string // claims to keep; nil keeps all
}

// issuer is an Issuer with the fingerprint of everything a verification depended on,
// so that a cached verification is reused only under the same configuration.
type issuer struct {
	cfg         Issuer
	fingerprint unique.Handle[string]
}

// Config configures a Verifier. The zero value of each field means its default.
type Config struct {
	// Issuers are the Better Auth deployments whose tokens verify.
	Issuers []Issuer
	// Leeway is the clock skew allowed for exp, nbf and iat: DefaultLeeway when
	// zero; NoLeeway (or any negative value) allows none.
	Leeway time.Duration
	// KeepClaims, when not nil, are the only claims kept of verified tokens. Policies
	// read a few claims; keeping just those is what lets the cache hold 100k tokens
	// in little memory, and it keeps less personal data in memory.
	KeepClaims []string
	// Cache reuses verifications (nil: none). One Cache can serve successive
	// Verifiers, so a policy reload does not make every token cold again.
	Cache *Cache
	// Now replaces time.Now, e.g. to check a sample token at its own iat.
	Now func() time.Time
}

// NewVerifier builds a Verifier. It fails on an issuer listed twice, with no
// audience, or allowing an unsupported algorithm.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{issuers: make(map[string]*issuer, len(cfg.Issuers)), leeway: cfg.Leeway, now: cfg.Now, cache: cfg.Cache}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.now == nil {
		v.now = time.Now
	}
	if cfg.KeepClaims != nil {
		v.keep = slices.Clone(cfg.KeepClaims)
		slices.Sort(v.keep)
		v.keep = slices.Compact(v.keep)
	}
	issuers := cfg.Issuers
	for i := range issuers {
		is := issuers[i]
		if is.Issuer == "" {
			return nil, errors.New("issuer with empty iss")
		}
		if _, dup := v.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("issuer %q listed twice", is.Issuer)
		}
		if len(is.Audiences) == 0 {
			return nil, fmt.Errorf("issuer %q: no audience", is.Issuer)
		}
		if len(is.Algorithms) == 0 {
			is.Algorithms = DefaultAlgorithms
		}
		for _, a := range is.Algorithms {
			if !slices.Contains(Supported, a) {
				return nil, fmt.Errorf("issuer %q: algorithm %q is not supported", is.Issuer, a)
			}
		}
		if is.Keys == nil {
			return nil, fmt.Errorf("issuer %q: no key source", is.Issuer)
		}
		fp := fmt.Sprintf("%s|%q|%q|%s|%p|%v|%q", is.Issuer, is.Audiences, is.Algorithms, v.leeway, is.Keys, v.keep == nil, v.keep)
		v.issuers[is.Issuer] = &issuer{cfg: is, fingerprint: unique.Make(fp)}
	}
	return v, nil
}

// Claims is a verified token's content.
type Claims struct {
	// Issuer and Subject are copied out for convenience.
	Issuer  string
	Subject string
	// key verified the signature (nil for a credential verified elsewhere).
	key *keyset.Key
	// exp and iat in whole unix seconds (0: none), as NumericDates are read: two
	// time.Time would cost the cache 32 bytes more a token.
	exp, iat int64
	// Values holds every claim kept (numbers are float64).
	Values ClaimSet

	// memo is nil until Reused is first called, then usedOnce, then the slots.
	memo atomic.Pointer[memoSlots]
	// alg is 1 + the index in Supported of the algorithm that signed (0: none):
	// one byte where a string would cost the cache 16 a token.
	alg uint8
}

// KID is the kid of the key that verified the signature ("" for a credential
// verified elsewhere).
func (c *Claims) KID() string {
	if c.key == nil {
		return ""
	}
	return c.key.KID
}

// Alg is the algorithm that signed ("" for a credential verified elsewhere).
func (c *Claims) Alg() jwa.SignatureAlgorithm {
	if c.alg == 0 {
		return ""
	}
	return Supported[c.alg-1]
}

// Expiry is exp (zero when there is none), in UTC.
func (c *Claims) Expiry() time.Time { return unixTime(c.exp) }

// IssuedAt is iat (zero when the token has none), in UTC.
func (c *Claims) IssuedAt() time.Time { return unixTime(c.iat) }

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// MemoSlots is the number of memo slots a Claims has.
const MemoSlots = 4

type memoSlots [MemoSlots]atomic.Pointer[any]

// usedOnce is the memo of a Claims that Reused has seen once; never written.
var usedOnce = new(memoSlots)

// Reused reports whether Reused was called on c before; the first call returns
// false. The engine keeps what it derives from a verification (Memo) only once
// the verification is used again, so that a token sent once (most tokens in a
// burst of new sign-ins) costs the cache no memory for it.
func (c *Claims) Reused() bool {
	return c.memo.Load() != nil || !c.memo.CompareAndSwap(nil, usedOnce)
}

// Memo returns what slot i (modulo MemoSlots) of c's memo holds, or nil. A user
// of a verification keeps there what it derives from the claims (the engine, an
// allow's headers), so that a cached verification is not derived from again on
// every request. A Claims may be shared by concurrent requests: a slot's value
// must be immutable, and checked on load against what it was derived under.
func (c *Claims) Memo(i int) any {
	m := c.memo.Load()
	if m == nil || m == usedOnce {
		return nil
	}
	if v := m[uint(i)%MemoSlots].Load(); v != nil {
		return *v
	}
	return nil
}

// SetMemo keeps v in slot i (modulo MemoSlots) of c's memo.
func (c *Claims) SetMemo(i int, v any) {
	m := c.memo.Load()
	if m == nil || m == usedOnce {
		if n := new(memoSlots); c.memo.CompareAndSwap(m, n) {
			m = n
		} else {
			m = c.memo.Load()
		}
	}
	m[uint(i)%MemoSlots].Store(&v)
}

// Verify checks raw and returns its claims, or a *reason.Error. The returned Claims
// may be shared with other callers (from the cache): treat them as read-only.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > MaxSize {
		return nil, reason.Errorf(reason.TokenTooLarge, "token of %d bytes exceeds %d", len(raw), MaxSize)
	}
	if v.cache == nil {
		e, err := v.verify(ctx, raw)
		if err != nil {
			return nil, err
		}
		return &e.claims, nil
	}
	// Hash the token's bytes in place: a []byte(raw) copy would be the hit path's
	// largest allocation. sha256 only reads them.
	h := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	now := v.now().UnixNano()
	if e := v.cache.get(&h); e != nil {
		if v.stillValid(e, now) {
			return &e.claims, nil
		}
		v.cache.drop(&h, e)
	}
	e, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	v.cache.put(&h, e, now)
	return &e.claims, nil
}

// stillValid says whether a cached verification holds now: same issuer
// configuration, the same key still published under its kid, inside its window.
func (v *Verifier) stillValid(e *cacheEntry, now int64) bool {
	is, key := v.issuers[e.claims.Issuer], e.claims.key
	return is != nil && is.fingerprint == e.fingerprint && is.cfg.Keys.Peek(key.KID) == key &&
		now >= e.notBefore && now <= e.notAfter
}

// verify does the full verification and returns the cache entry describing it.
func (v *Verifier) verify(ctx context.Context, raw string) (*cacheEntry, error) {
	c, err := parseCompact(raw)
	if err != nil {
		return nil, err
	}
	// Better Auth signs its session cookie cache with the same keys: presented as a
	// Bearer token it would pass for a JWT with another audience and shape.
	if c.hdr.Typ == CookieCacheType {
		return nil, reason.Errorf(reason.TokenMalformed, "a session cookie cache is not a bearer token")
	}
	iss, key, err := v.checkSignature(ctx, c)
	if err != nil {
		return nil, err
	}
	return v.checkClaims(c, iss, key, iss.cfg.Audiences, nil)
}

// checkSignature finds the key c names among its issuer's and verifies the
// signature. The unverified iss only selects which issuer's keys to try; a forged
// iss can only pick keys that then fail to verify the signature.
func (v *Verifier) checkSignature(ctx context.Context, c *compact) (*issuer, *keyset.Key, error) {
	iss, ok := v.issuers[c.iss]
	if !ok {
		return nil, nil, reason.Errorf(reason.IssuerMismatch, "iss %q is not a configured issuer", reason.Clip(c.iss, 100))
	}
	if !slices.Contains(iss.cfg.Algorithms, c.alg) {
		return nil, nil, reason.Errorf(reason.AlgNotAllowed, "alg %s is not allowed for issuer %s", c.alg, iss.cfg.Issuer)
	}
	if c.hdr.Kid == "" {
		return nil, nil, reason.Errorf(reason.UnknownKID, "token has no kid")
	}
	key, err := iss.cfg.Keys.Lookup(ctx, c.hdr.Kid)
	switch {
	case errors.Is(err, keyset.ErrUnknownKID):
		return nil, nil, reason.Errorf(reason.UnknownKID, "kid %q is not in the JWKS of %s", reason.Clip(c.hdr.Kid, 64), iss.cfg.Issuer)
	case err != nil:
		return nil, nil, reason.Wrap(reason.JWKSUnavailable, "no keys for "+iss.cfg.Issuer, err)
	}
	if err := algMatchesKey(c.alg, key); err != nil {
		return nil, nil, reason.Wrap(reason.AlgNotAllowed, "algorithm does not fit the key", err)
	}
	if err := verifySignature(c.alg, key.Public, c.signingInput, c.sig); err != nil {
		return nil, nil, reason.Wrap(reason.SignatureInvalid, "signature does not verify with kid "+reason.Clip(key.KID, 64), err)
	}
	return iss, key, nil
}

// reshape turns verified claims into those a policy reads, with a deadline of its
// own (zero: none): the session cookie cache's session and user.
type reshape func(claims map[string]any) (map[string]any, time.Time, error)

// checkClaims checks the claims of a token whose signature verified (decoded
// strictly, before the signature check when small) against iss and the clock, and
// builds the cache entry of the verification.
func (v *Verifier) checkClaims(c *compact, iss *issuer, key *keyset.Key, audiences []string, shape reshape) (*cacheEntry, error) {
	if c.claims == nil && c.claimsErr == nil {
		c.claims, c.claimsErr = decodeChecked(c.payload) // a large payload, only peeked at before
	}
	claims, err := c.claims, c.claimsErr
	if err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "claims are not a valid JSON object", err)
	}
	if s, _ := claims["iss"].(string); s != iss.cfg.Issuer {
		// Only possible when the lenient peek read a differently spelt member.
		return nil, reason.Errorf(reason.IssuerMismatch, "iss member is not exactly %q", iss.cfg.Issuer)
	}
	if err := checkNumericDates(claims); err != nil {
		return nil, err
	}
	reg, err := readRegistered(claims)
	if err != nil {
		return nil, err
	}
	if err := checkTimes(reg, v.now(), v.leeway); err != nil {
		return nil, err
	}
	if !audienceMatches(reg.aud, audiences) {
		return nil, reason.Errorf(reason.AudienceMismatch, "aud %q does not contain an accepted audience", reason.Clip(fmt.Sprint(reg.aud), 200))
	}
	sub, _ := claims["sub"].(string)
	var deadline time.Time
	if shape != nil {
		if claims, deadline, err = shape(claims); err != nil {
			return nil, err
		}
	}
	set, sub := newClaimSet(claims, v.keep, sub)
	from, until := validity(reg.exp, reg.nbf, reg.iat, v.leeway)
	if !deadline.IsZero() && deadline.UnixNano() < until {
		until = deadline.UnixNano()
	}
	return &cacheEntry{
		claims: Claims{
			Issuer: iss.cfg.Issuer, Subject: sub, key: key, alg: uint8(slices.Index(Supported, c.alg) + 1),
			exp: unixSeconds(reg.exp), iat: unixSeconds(reg.iat), Values: set,
		},
		fingerprint: iss.fingerprint, notBefore: from, notAfter: until,
	}, nil
}
