package decisions

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// signer holds the table's keys: the trusted one, another with the same kid, and
// one with a kid nobody lists.
type signer struct {
	now                  time.Time
	trusted              keyset.Static
	good, other, unknown ed25519.PrivateKey
}

func newSigner(now time.Time) (*signer, error) {
	s := &signer{now: now}
	var pub ed25519.PublicKey
	var err error
	for _, k := range []*ed25519.PrivateKey{&s.good, &s.other, &s.unknown} {
		var p ed25519.PublicKey
		if p, *k, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		if pub == nil {
			pub = p
		}
	}
	s.trusted = keyset.Static{KID: {KID: KID, Alg: jwa.EdDSA, Public: pub}}
	return s, nil
}

func (s *signer) authorization(t *Token, p *policy.Policy) (string, error) {
	switch {
	case t.Authorization != "":
		return t.Authorization, nil
	case t.Raw != "":
		return "Bearer " + t.Raw, nil
	case t.Oversize:
		return "Bearer " + strings.Repeat("a", token.MaxSize+1), nil
	}
	claims, err := t.claimSet(s.now, p)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	if t.Header != nil {
		h, err := json.Marshal(t.Header)
		if err != nil {
			return "", err
		}
		enc := base64.RawURLEncoding.EncodeToString
		return "Bearer " + enc(h) + "." + enc(payload) + "." + enc([]byte("not a signature")), nil
	}
	key, kid := s.good, KID
	switch t.Key {
	case "":
	case "other":
		key = s.other
	case "unknown":
		key, kid = s.unknown, "unknown-key"
	default:
		return "", fmt.Errorf("key %q is not \"\", other or unknown", t.Key)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return "", err
	}
	b, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	return "Bearer " + string(b), nil
}

func (t *Token) claimSet(now time.Time, p *policy.Policy) (map[string]any, error) {
	c := map[string]any{"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix()}
	if len(p.Issuers) > 0 {
		c["iss"], c["aud"] = p.Issuers[0].Issuer, p.Issuers[0].Audiences[0]
	}
	for k, v := range t.Claims {
		if d, ok := v.(string); ok && (k == "exp" || k == "nbf" || k == "iat") {
			rel, err := time.ParseDuration(d)
			switch {
			case err == nil:
				v = now.Add(rel).Unix()
			case strings.Trim(d, "0123456789") != "":
				return nil, fmt.Errorf("claims.%s: %q is neither a duration from now (\"-1h\") nor digits (a numeric string, to test refusing it)", k, d)
			}
		}
		c[k] = v
	}
	// A token of another issuer of the policy (a fragment's, say) is for that
	// issuer's audience unless the case says otherwise.
	if iss, ok := t.Claims["iss"].(string); ok {
		if _, given := t.Claims["aud"]; !given {
			for _, is := range p.Issuers {
				if is.Issuer == iss && len(is.Audiences) > 0 {
					c["aud"] = is.Audiences[0]
				}
			}
		}
	}
	for _, k := range t.Omit {
		delete(c, k)
	}
	return c, nil
}
