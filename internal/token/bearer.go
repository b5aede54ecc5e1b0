package token

import (
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// FromAuthorization extracts the token from the Authorization header values of one
// request. The scheme is case-insensitive and followed by exactly one space; a
// second Authorization value (or one that a proxy joined with a comma) is refused
// rather than guessed at. Tokens are never read from query strings or cookies.
func FromAuthorization(values []string) (string, error) {
	tok, err := bearerValue(values)
	if err != nil {
		return "", err
	}
	for i := 0; i < len(tok); i++ {
		if !isTokenChar(tok[i]) {
			return "", reason.Errorf(reason.TokenMalformed, "token has a character outside base64url and '.'")
		}
	}
	return tok, nil
}

// SessionFromAuthorization extracts a bearer-plugin session token,
// "<token>.<signature>" with a standard-base64 signature (possibly URL-encoded):
// printable ASCII without spaces, exactly one '.', as Better Auth's bearer plugin
// issues it. ok is false when the value is not shaped so (a JWT, say).
func SessionFromAuthorization(values []string) (tok string, ok bool) {
	tok, err := bearerValue(values)
	if err != nil || strings.Count(tok, ".") != 1 {
		return "", false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '"' || c == '\\' {
			return "", false
		}
	}
	return tok, true
}

func bearerValue(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", reason.Errorf(reason.TokenMissing, "no Authorization header")
	case 1:
	default:
		return "", reason.Errorf(reason.TokenMalformed, "more than one Authorization header")
	}
	v := values[0]
	if v == "" {
		return "", reason.Errorf(reason.TokenMissing, "empty Authorization header")
	}
	const scheme = "bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", reason.Errorf(reason.TokenMalformed, "Authorization scheme is not Bearer")
	}
	tok := v[len(scheme):]
	if len(tok) > MaxSize {
		return "", reason.Errorf(reason.TokenTooLarge, "token of %d bytes exceeds %d", len(tok), MaxSize)
	}
	if tok == "" {
		return "", reason.Errorf(reason.TokenMalformed, "Bearer with no token")
	}
	return tok, nil
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
