package token_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// cookieCache is Better Auth's signed session_data payload for one session.
func cookieCache(sessionToken string, mod func(map[string]any)) map[string]any {
	user := map[string]any{"id": "user-1", "email": "a@example.test", "uuid": "6639900d-cfe5-59ec-bd5c-e0e68598457e", "role": "user", "banned": false}
	session := map[string]any{"id": "session-1", "token": sessionToken, "userId": "user-1", "expiresAt": now.Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339Nano)}
	c := map[string]any{"session": session, "user": user, "sid": sessionToken, "sub": "user-1", "iss": iss,
		"aud": token.CookieCacheAudience, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestVerifyCookieCache(t *testing.T) {
	k := tokentest.NewKey(jwa.EdDSA, "k1")
	other := tokentest.NewKey(jwa.EdDSA, "k1")
	for _, cache := range []*token.Cache{nil, token.NewCache(token.CacheConfig{})} {
		v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{iss}, Keys: static(t, k)}},
			Now: func() time.Time { return now }, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		typ := map[string]any{"typ": token.CookieCacheType}
		const st = "tok3nOfTheSession"
		good := k.Sign(cookieCache(st, nil), typ)
		cases := []struct {
			name, data, sessionToken string
			want                     reason.Code
		}{
			{"valid", good, st, ""},
			{"again, from the cache", good, st, ""},
			{"bound to another session_token", good, "anotherSessionTok", reason.TokenMalformed},
			{"no session_token", good, "", reason.TokenMissing},
			{"tampered", good[:len(good)-4] + "AAAA", st, reason.SignatureInvalid},
			{"signed by another key", other.Sign(cookieCache(st, nil), typ), st, reason.SignatureInvalid},
			{"expired", k.Sign(cookieCache(st, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), typ), st, reason.TokenExpired},
			{"session ended", k.Sign(cookieCache(st, func(c map[string]any) {
				c["session"].(map[string]any)["expiresAt"] = now.Add(-time.Minute).UTC().Format(time.RFC3339Nano)
			}), typ), st, reason.TokenExpired},
			{"no typ: a JWT presented as a cookie", k.Sign(cookieCache(st, nil), nil), st, reason.TokenMalformed},
			{"a JWT's typ", k.Sign(cookieCache(st, nil), map[string]any{"typ": "JWT"}), st, reason.TokenMalformed},
			{"wrong aud", k.Sign(cookieCache(st, func(c map[string]any) { c["aud"] = iss }), typ), st, reason.AudienceMismatch},
			{"sub is not the user's id", k.Sign(cookieCache(st, func(c map[string]any) { c["sub"] = "admin" }), typ), st, reason.TokenMalformed},
			{"no session", k.Sign(cookieCache(st, func(c map[string]any) { delete(c, "session") }), typ), st, reason.TokenMalformed},
			{"wrong issuer", k.Sign(cookieCache(st, func(c map[string]any) { c["iss"] = "https://evil.example.com" }), typ), st, reason.IssuerMismatch},
		}
		for _, tc := range cases {
			c, err := v.VerifyCookieCache(context.Background(), tc.data, tc.sessionToken)
			if got := codeOf(err); got != tc.want {
				t.Errorf("%s (cache %v): %q, want %q (%v)", tc.name, cache != nil, got, tc.want, err)
				continue
			}
			if tc.want != "" {
				continue
			}
			// The policy sees the user's fields and the session's id; never its token.
			if c.Subject != "user-1" || get(c, "sid") != "session-1" || get(c, "uuid") != "6639900d-cfe5-59ec-bd5c-e0e68598457e" || get(c, "role") != "user" {
				t.Errorf("%s: claims %+v", tc.name, c.Values.Map())
			}
			for name, val := range c.Values.Map() {
				if s, ok := val.(string); ok && strings.Contains(s, st) {
					t.Errorf("%s: claim %s holds the session token", tc.name, name)
				}
			}
		}
		// A cookie cache presented as a Bearer token is refused, cached or not.
		if _, err := v.Verify(context.Background(), good); codeOf(err) != reason.TokenMalformed {
			t.Errorf("cookie cache as a bearer token (cache %v): %v", cache != nil, err)
		}
	}
}
