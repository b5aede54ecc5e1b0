package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// verifySignature checks sig over the signing input with pub, for alg (RFC 7518
// §3). It calls the standard library directly, as jwx's jws verifiers do, minus
// what they add per call: a copy of the signing input, the key's conversion from
// any, and a verifier looked up by algorithm. jwx still parses the JWKs.
func verifySignature(alg jwa.SignatureAlgorithm, pub any, input string, sig []byte) error {
	// The verifiers only read the message: no []byte(input) copy.
	msg := unsafe.Slice(unsafe.StringData(input), len(input))
	switch alg {
	case jwa.EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("EdDSA needs an Ed25519 public key, not %T", pub)
		}
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("EdDSA signature does not match")
		}
		return nil
	case jwa.ES256, jwa.ES384, jwa.ES512:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s needs an ECDSA public key, not %T", alg, pub)
		}
		// R and S, each as long as the curve's order in bytes (RFC 7518 §3.4).
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return fmt.Errorf("%s signature of %d bytes, want %d", alg, len(sig), 2*n)
		}
		h := hashOf(alg).New()
		h.Write(msg)
		var r, s big.Int
		if !ecdsa.Verify(k, h.Sum(nil), r.SetBytes(sig[:n]), s.SetBytes(sig[n:])) {
			return fmt.Errorf("%s signature does not match", alg)
		}
		return nil
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s needs an RSA public key, not %T", alg, pub)
		}
		hash := hashOf(alg)
		h := hash.New()
		h.Write(msg)
		var err error
		if strings.HasPrefix(string(alg), "PS") {
			// nil options: any salt length, as jwx verified PSS.
			err = rsa.VerifyPSS(k, hash, h.Sum(nil), sig, nil)
		} else {
			err = rsa.VerifyPKCS1v15(k, hash, h.Sum(nil), sig)
		}
		if err != nil {
			return fmt.Errorf("%s signature does not match: %w", alg, err)
		}
		return nil
	}
	return fmt.Errorf("alg %s is not supported", alg)
}

func hashOf(alg jwa.SignatureAlgorithm) crypto.Hash {
	switch alg {
	case jwa.ES384, jwa.RS384, jwa.PS384:
		return crypto.SHA384
	case jwa.ES512, jwa.RS512, jwa.PS512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// registered are a token's RFC 7519 registered claims, typed.
type registered struct {
	aud           []string
	exp, nbf, iat time.Time
}

// readRegistered types the registered claims the way jwx's jwt.Token.Set did
// (this code replaced it, and every test of the old behaviour still holds): iss,
// sub and jti must be strings, aud a string or an array of strings, exp, nbf and
// iat NumericDates of whole seconds (fractions dropped). checkNumericDates has
// already made the dates numbers and exp ≥ 1.
func readRegistered(claims map[string]any) (registered, error) {
	var r registered
	wrongType := func(name string) error {
		return reason.Errorf(reason.TokenMalformed, "claim %s has the wrong type", name)
	}
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} {
		v, ok := claims[name]
		if !ok {
			continue
		}
		switch name {
		case "iss", "sub", "jti":
			if _, ok := v.(string); !ok {
				return r, wrongType(name)
			}
		case "aud":
			switch a := v.(type) {
			case string:
				r.aud = []string{a}
			case []any:
				r.aud = make([]string, len(a))
				for i, e := range a {
					s, ok := e.(string)
					if !ok {
						return r, wrongType(name)
					}
					r.aud[i] = s
				}
			default:
				return r, wrongType(name)
			}
		default:
			t, ok := numericDate(v)
			if !ok {
				return r, wrongType(name)
			}
			switch name {
			case "exp":
				r.exp = t
			case "nbf":
				r.nbf = t
			default:
				r.iat = t
			}
		}
	}
	return r, nil
}

// numericDate is a NumericDate's whole seconds. Like jwx, it refuses values that
// are negative (even -0) or beyond int64 seconds, and rounds to nine decimals
// before dropping the fraction.
func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || math.Signbit(f) || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	s := strconv.FormatFloat(f, 'f', 9, 64)
	whole, _, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

var (
	errIssuedInFuture = errors.New(`"iat" not satisfied`)
	errNotYetValid    = errors.New(`"nbf" not satisfied`)
)

// checkTimes is jwx's jwt.Validate for iat, exp and nbf, in its order and with
// its rules: times in whole seconds, leeway on each side, a zero date unchecked.
func checkTimes(r registered, now time.Time, leeway time.Duration) error {
	now = now.Truncate(time.Second)
	set := func(t time.Time) bool { return !t.IsZero() && t.Unix() != 0 }
	if set(r.iat) && now.Before(r.iat.Add(-leeway)) {
		return reason.Wrap(reason.TokenNotYetValid, "nbf or iat is in the future", errIssuedInFuture)
	}
	if set(r.exp) && !now.Before(r.exp.Add(leeway)) {
		return reason.Errorf(reason.TokenExpired, "expired at %s", r.exp.UTC().Format(time.RFC3339))
	}
	if set(r.nbf) && now.Before(r.nbf.Add(-leeway)) {
		return reason.Wrap(reason.TokenNotYetValid, "nbf or iat is in the future", errNotYetValid)
	}
	return nil
}
