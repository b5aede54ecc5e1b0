package token

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// Better Auth's session cookie cache, when the jwt plugin signs it
// (jwt({ sessionCookieCache: true }) with cookieCache strategy "jwt").
const (
	// CookieCacheType is the JOSE typ of a signed session_data cookie.
	CookieCacheType = "better-auth.session-cache+jwt"
	// CookieCacheAudience is its aud.
	CookieCacheAudience = "better-auth:session-cache"
)

// VerifyCookieCache verifies a signed session_data cookie offline, bound to the
// session_token cookie's token (the part before its signature), and returns the
// claims a policy reads: the user's fields, sub, and sid set to the session's id.
// The session token itself (the cookie's sid claim, a credential) is not kept.
// The session's expiresAt is honoured as well as exp.
func (v *Verifier) VerifyCookieCache(ctx context.Context, data, sessionToken string) (*Claims, error) {
	if len(data) > MaxSize {
		return nil, reason.Errorf(reason.TokenTooLarge, "session cookie of %d bytes exceeds %d", len(data), MaxSize)
	}
	if sessionToken == "" {
		return nil, reason.Errorf(reason.TokenMissing, "session_data without a session_token cookie")
	}
	if v.cache == nil {
		e, err := v.verifyCookie(ctx, data, sessionToken)
		if err != nil {
			return nil, err
		}
		return &e.claims, nil
	}
	// The key binds both cookies and marks the kind, so a cached cookie can never
	// answer for a Bearer token of the same bytes.
	hash := sha256.New()
	hash.Write([]byte("better-auth-cookie\x00"))
	hash.Write([]byte(data))
	hash.Write([]byte{0})
	hash.Write([]byte(sessionToken))
	var h [32]byte
	hash.Sum(h[:0])
	now := v.now().UnixNano()
	if e := v.cache.get(&h); e != nil {
		if v.stillValid(e, now) {
			return &e.claims, nil
		}
		v.cache.drop(&h, e)
	}
	e, err := v.verifyCookie(ctx, data, sessionToken)
	if err != nil {
		return nil, err
	}
	v.cache.put(&h, e, now)
	return &e.claims, nil
}

func (v *Verifier) verifyCookie(ctx context.Context, data, sessionToken string) (*cacheEntry, error) {
	c, err := parseCompact(data)
	if err != nil {
		return nil, err
	}
	if c.hdr.Typ != CookieCacheType {
		return nil, reason.Errorf(reason.TokenMalformed, "session_data is not a signed session cookie cache (typ %q)", reason.Clip(c.hdr.Typ, 64))
	}
	iss, key, err := v.checkSignature(ctx, c)
	if err != nil {
		return nil, err
	}
	return v.checkClaims(c, iss, key, []string{CookieCacheAudience}, func(claims map[string]any) (map[string]any, time.Time, error) {
		return cookieClaims(claims, sessionToken, v.now())
	})
}

// cookieClaims checks what Better Auth checks of its cookie cache (sub is the
// user's id, sid is the session's token, the session has not ended) and returns
// the user's fields with sub, sid = the session's id, and the registered claims.
func cookieClaims(claims map[string]any, sessionToken string, now time.Time) (map[string]any, time.Time, error) {
	user, _ := claims["user"].(map[string]any)
	session, _ := claims["session"].(map[string]any)
	if user == nil || session == nil {
		return nil, time.Time{}, reason.Errorf(reason.TokenMalformed, "session cookie without session and user")
	}
	sub, _ := claims["sub"].(string)
	if id, _ := user["id"].(string); sub == "" || id != sub {
		return nil, time.Time{}, reason.Errorf(reason.TokenMalformed, "session cookie's sub is not its user's id")
	}
	sid, _ := claims["sid"].(string)
	if sid == "" || subtle.ConstantTimeCompare([]byte(sid), []byte(sessionToken)) != 1 {
		return nil, time.Time{}, reason.Errorf(reason.TokenMalformed, "session_data belongs to another session than session_token")
	}
	sessionID, _ := session["id"].(string)
	ends, _ := session["expiresAt"].(string)
	until, err := time.Parse(time.RFC3339Nano, ends)
	switch {
	case sessionID == "":
		return nil, time.Time{}, reason.Errorf(reason.TokenMalformed, "session cookie's session has no id")
	case err != nil:
		return nil, time.Time{}, reason.Errorf(reason.TokenMalformed, "session cookie's session has no readable expiresAt")
	case !now.Before(until):
		return nil, time.Time{}, reason.Errorf(reason.TokenExpired, "the session ended at %s", until.UTC().Format(time.RFC3339))
	}
	out := make(map[string]any, len(user)+6)
	for k, val := range user {
		out[k] = val
	}
	out["sub"], out["sid"] = sub, sessionID
	for _, k := range []string{"iss", "aud", "exp", "iat", "nbf"} {
		if val, ok := claims[k]; ok {
			out[k] = val
		}
	}
	return out, until, nil
}
