package token

import (
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// checkNumericDates enforces RFC 7519 §2: exp, nbf and iat are JSON numbers (a
// numeric string is not one), and exp is required and at least 1. jwx treats an exp
// whose whole seconds are zero as "no expiry", so exp: 0.5 would never expire.
func checkNumericDates(claims map[string]any) error {
	exp, present := claims["exp"]
	if !present {
		return reason.Errorf(reason.TokenMalformed, "token has no exp")
	}
	if f, ok := exp.(float64); !ok || f < 1 {
		return reason.Errorf(reason.TokenMalformed, "exp is not a positive NumericDate")
	}
	for _, name := range []string{"nbf", "iat"} {
		if v, present := claims[name]; present {
			if _, ok := v.(float64); !ok {
				return reason.Errorf(reason.TokenMalformed, "%s is not a NumericDate", name)
			}
		}
	}
	return nil
}

// algMatchesKey refuses algorithm confusion: the header's alg must fit the key's
// type and curve, and the key's own alg when the JWKS states one.
func algMatchesKey(alg jwa.SignatureAlgorithm, k *keyset.Key) error {
	if k.Alg != "" && k.Alg != alg {
		return fmt.Errorf("token alg %s but key %q is for %s", alg, k.KID, k.Alg)
	}
	fam := k.Family()
	switch alg {
	case jwa.EdDSA, jwa.ES256, jwa.ES384, jwa.ES512:
		if fam == string(alg) {
			return nil
		}
	case jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512:
		if fam == "RSA" {
			return nil
		}
	}
	return fmt.Errorf("token alg %s cannot use key %q of family %s", alg, k.KID, fam)
}

func audienceMatches(got, want []string) bool {
	for _, g := range got {
		if slices.Contains(want, g) {
			return true
		}
	}
	return false
}
