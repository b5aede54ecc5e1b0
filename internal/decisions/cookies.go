package decisions

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// cookies builds the Cookie header Better Auth's client would send: session_token
// and a session_data cookie cache signed with the table's key.
func (s *signer) cookies(t *Token, p *policy.Policy) (string, error) {
	claims, err := t.claimSet(s.now, p)
	if err != nil {
		return "", err
	}
	ct := t.Cookie
	const sessionToken = "sessionTokenOfTheTable"
	ends := s.now.Add(7 * 24 * time.Hour)
	if ct.SessionEnds != "" {
		d, err := time.ParseDuration(ct.SessionEnds)
		if err != nil {
			return "", err
		}
		ends = s.now.Add(d)
	}
	sub, _ := claims["sub"].(string)
	sid, _ := claims["sid"].(string)
	if sid == "" {
		sid = "session-of-the-table"
	}
	user := map[string]any{}
	for k, v := range claims {
		switch k {
		case "iss", "aud", "exp", "iat", "nbf", "sub", "sid":
		default:
			user[k] = v
		}
	}
	user["id"] = sub
	payload := map[string]any{
		"session": map[string]any{"id": sid, "token": sessionToken, "userId": sub, "expiresAt": ends.UTC().Format(time.RFC3339Nano)},
		"user":    user, "sid": sessionToken, "sub": sub, "iss": claims["iss"], "aud": token.CookieCacheAudience,
		"iat": claims["iat"], "exp": claims["exp"],
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, KID)
	_ = hdr.Set(jws.TypeKey, token.CookieCacheType)
	data, err := jws.Sign(body, jws.WithKey(jwa.EdDSA, s.good, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	prefix := ct.Prefix
	if prefix == "" {
		prefix = "better-auth"
	}
	if iss, _ := claims["iss"].(string); strings.HasPrefix(iss, "https://") && !ct.Plain {
		prefix = "__Secure-" + prefix
	}
	st := sessionToken
	if ct.SessionToken != "" {
		st = ct.SessionToken
	}
	return prefix + ".session_token=" + st + ".c2lnbmF0dXJl; " + prefix + ".session_data=" + string(data), nil
}
