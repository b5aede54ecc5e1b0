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
	for i := 0; i < len(tok); i++ {
		if !isTokenChar(tok[i]) {
			return "", reason.Errorf(reason.TokenMalformed, "token has a character outside base64url and '.'")
		}
	}
	return tok, nil
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
