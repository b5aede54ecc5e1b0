package engine

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// MaxHeaderValue bounds an identity header value. A longer claim is not truncated
// (that would forge a different identity); the header is removed instead.
const MaxHeaderValue = 4096

// identityHeaders builds the headers to set from claims, and lists every configured
// identity header that the claims do not set, so that a client-sent copy is removed.
func identityHeaders(hs []policy.IdentityHeader, claims token.ClaimSet) (set []Header, remove []string) {
	set = make([]Header, 0, len(hs))
	for _, h := range hs {
		c, _ := claims.Get(h.Claim)
		v, ok := HeaderValue(c)
		if !ok {
			remove = append(remove, h.Name)
			continue
		}
		set = append(set, Header{Name: h.Name, Value: v})
	}
	return set, remove
}

// HeaderValue renders a claim as a header value. Claims are user-controlled (a
// Better Auth user picks their own name), so control characters, which could split
// or fold headers, are dropped. It returns false for absent, null, empty or
// oversized values.
func HeaderValue(v any) (string, bool) {
	var s string
	switch t := v.(type) {
	case nil:
		return "", false
	case string:
		s = t
	case bool:
		s = strconv.FormatBool(t)
	case float64:
		s = strconv.FormatFloat(t, 'f', -1, 64)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	s = strings.TrimSpace(sanitize(s))
	if s == "" || len(s) > MaxHeaderValue {
		return "", false
	}
	return s, true
}

func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return -1
		}
		return r
	}, s)
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == unicode.ReplacementChar
}
