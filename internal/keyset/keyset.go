// Package keyset holds verification keys: parsing and validating a JWKS document
// into usable public keys, and a fixed set of them. It fetches nothing; the
// jwkscache package keeps sets fresh over HTTP.
package keyset

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Key set limits. Better Auth generates 2048-bit RSA keys and publishes a handful of
// keys at most (the current one and those in their grace period).
const (
	MinRSABits = 2048
	// MaxRSABits bounds the cost of one RSA verification a token can ask for.
	MaxRSABits = 8192
	// MaxKeys bounds a key set; a larger one is refused whole.
	MaxKeys = 100
)

// Errors returned by a key source's Lookup.
var (
	// ErrUnknownKID means the key set is available but has no key with that kid.
	ErrUnknownKID = errors.New("no key with that kid")
	// ErrUnavailable means there is no usable key set (never fetched, or dropped as too stale).
	ErrUnavailable = errors.New("no usable key set")
)

// Key is one usable public key from a JWKS.
type Key struct {
	// KID is the key id tokens name in their header.
	KID string
	// Alg is the JWK's "alg" member, or "" when absent (Better Auth sets it; others may not).
	Alg jwa.SignatureAlgorithm
	// Public is an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey.
	Public any
}

// Family describes what a key can verify: "EdDSA", "ES256", "ES384", "ES512" or "RSA".
func (k Key) Family() string {
	switch p := k.Public.(type) {
	case ed25519.PublicKey:
		return "EdDSA"
	case *ecdsa.PublicKey:
		switch p.Curve.Params().BitSize {
		case 256:
			return "ES256"
		case 384:
			return "ES384"
		case 521:
			return "ES512"
		}
	case *rsa.PublicKey:
		return "RSA"
	}
	return ""
}

// Parse parses a JWKS document into usable keys by kid. Keys that cannot be used
// (symmetric, encryption-only, unknown type or curve, malformed or weak public key,
// key_ops without verify, no kid, duplicate kid) are skipped and described in
// skipped; it is an error only when the document does not parse, holds more than
// MaxKeys keys, or leaves no usable key, so a bad set never replaces a good one.
func Parse(body []byte) (keys Static, skipped []string, err error) {
	// A JWKS is input from the network: whatever jwx does with a hostile document,
	// it must not take the process down.
	defer func() {
		if r := recover(); r != nil {
			keys, skipped, err = nil, nil, fmt.Errorf("parsing jwks: %v", r)
		}
	}()
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing jwks: %w", err)
	}
	if set.Len() > MaxKeys {
		return nil, nil, fmt.Errorf("jwks has %d keys, more than %d", set.Len(), MaxKeys)
	}
	keys = make(Static, set.Len())
	ctx := context.Background()
	for it := set.Keys(ctx); it.Next(ctx); {
		raw, _ := it.Pair().Value.(jwk.Key)
		k, err := usableKey(raw)
		if err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		if _, dup := keys[k.KID]; dup {
			skipped = append(skipped, fmt.Sprintf("kid %q: duplicate, keeping the first", k.KID))
			continue
		}
		keys[k.KID] = &k
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("jwks has no usable key")
	}
	return keys, skipped, nil
}

func usableKey(k jwk.Key) (Key, error) {
	if k == nil {
		return Key{}, errors.New("not a key")
	}
	kid := k.KeyID()
	if kid == "" {
		return Key{}, fmt.Errorf("key of type %s has no kid", k.KeyType())
	}
	if use := k.KeyUsage(); use != "" && use != string(jwk.ForSignature) {
		return Key{}, fmt.Errorf("kid %q: use %q is not sig", kid, use)
	}
	if ops := k.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
		return Key{}, fmt.Errorf("kid %q: key_ops %q do not include verify", kid, ops)
	}
	switch k.KeyType() {
	case jwa.OKP, jwa.EC, jwa.RSA:
	default:
		return Key{}, fmt.Errorf("kid %q: key type %q not supported", kid, k.KeyType())
	}
	// A JWKS should hold public keys only; if a private one slipped in, use its public half.
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return Key{}, fmt.Errorf("kid %q: %w", kid, err)
	}
	var raw any
	if err := pub.Raw(&raw); err != nil {
		return Key{}, fmt.Errorf("kid %q: %w", kid, err)
	}
	out := Key{KID: kid, Public: raw}
	if a := k.Algorithm(); a != nil && a.String() != "" {
		out.Alg = jwa.SignatureAlgorithm(a.String())
	}
	switch p := raw.(type) {
	case ed25519.PublicKey:
		// crypto/ed25519 panics on any other length, and jwx passes x through as is.
		if len(p) != ed25519.PublicKeySize {
			return Key{}, fmt.Errorf("kid %q: Ed25519 x is %d bytes, not %d", kid, len(p), ed25519.PublicKeySize)
		}
	case *ecdsa.PublicKey:
		if out.Family() == "" {
			return Key{}, fmt.Errorf("kid %q: curve %s not supported", kid, p.Curve.Params().Name)
		}
		// ECDH validates the point (on the curve, not infinity): an off-curve point
		// is the invalid-curve attack's way in.
		if _, err := p.ECDH(); err != nil {
			return Key{}, fmt.Errorf("kid %q: EC point is not on %s", kid, p.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSABits {
			return Key{}, fmt.Errorf("kid %q: RSA key of %d bits is too small", kid, p.N.BitLen())
		}
		if p.N.BitLen() > MaxRSABits {
			return Key{}, fmt.Errorf("kid %q: RSA key of %d bits is too large", kid, p.N.BitLen())
		}
		if p.E < 3 || p.E%2 == 0 {
			return Key{}, fmt.Errorf("kid %q: RSA exponent %d is not odd and at least 3", kid, p.E)
		}
	default:
		// e.g. X25519 (OKP for key agreement): not a signature key.
		return Key{}, fmt.Errorf("kid %q: %T is not a signature key", kid, raw)
	}
	return out, nil
}

// Static is a fixed key set, e.g. read from a file; it implements the lookup that
// token verification needs without any fetching.
type Static map[string]*Key

// Lookup returns the key with the given kid.
func (s Static) Lookup(_ context.Context, kid string) (*Key, error) {
	if len(s) == 0 {
		return nil, ErrUnavailable
	}
	k, ok := s[kid]
	if !ok {
		return nil, ErrUnknownKID
	}
	return k, nil
}

// Peek returns the key with the given kid, or nil.
func (s Static) Peek(kid string) *Key { return s[kid] }

// SameAs reports whether k and o are the same key (same kid, alg and public key).
func (k *Key) SameAs(o *Key) bool {
	if k.KID != o.KID || k.Alg != o.Alg {
		return false
	}
	eq, ok := k.Public.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(o.Public)
}

// Describe returns the JWK type and curve (or RSA size) of the key, for listings.
func (k Key) Describe() (kty, crv string) {
	switch p := k.Public.(type) {
	case ed25519.PublicKey:
		return "OKP", "Ed25519"
	case *ecdsa.PublicKey:
		return "EC", p.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA", fmt.Sprintf("%d bits", p.N.BitLen())
	}
	return "?", ""
}
