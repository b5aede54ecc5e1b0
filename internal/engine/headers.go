package engine

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// MaxHeaderValue bounds an identity header value. A longer claim is not truncated
// (that would forge a different identity); the header is removed instead.
const MaxHeaderValue = 4096

// identityHeaders builds the headers to set from claims. It lists for removal every
// configured identity header that the claims do not set (so that a client-sent copy
// is removed), the method-override headers, and strip (variants of identity headers
// the request carried).
func identityHeaders(hs []policy.IdentityHeader, claims token.ClaimSet, strip []string) (set []Header, remove []string) {
	set = make([]Header, 0, len(hs))
	remove = make([]string, 0, len(policy.MethodOverrideHeaders)+len(strip)+1)
	for _, h := range hs {
		c, _ := claims.Get(h.Claim)
		v, ok := HeaderValue(c)
		if !ok {
			remove = append(remove, h.Name)
			continue
		}
		set = append(set, Header{Name: h.Name, Value: v})
	}
	remove = append(remove, policy.MethodOverrideHeaders...)
	remove = append(remove, strip...)
	return set, remove
}

// HeaderValue renders a claim as a header value. Claims are user-controlled (a
// Better Auth user picks their own name). A value that would need changing to be a
// safe header (control characters, which could split or fold headers; NEL, line
// separators, U+FFFD from lone surrogates; surrounding white space) is refused
// rather than cleaned: cleaning could turn two different claims into the same
// header value, i.e. one identity into another. It returns false for such values
// and for absent, null, empty or oversized ones; the header is then removed.
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
		// Beyond 2^53 a JSON number no longer names one integer: two different
		// claims would render as the same header value.
		if math.IsNaN(t) || math.Abs(t) >= 1<<53 {
			return "", false
		}
		s = strconv.FormatFloat(t, 'f', -1, 64)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	if s == "" || len(s) > MaxHeaderValue || strings.TrimSpace(s) != s || !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if unsafeRune(r) {
			return "", false
		}
	}
	return s, true
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == unicode.ReplacementChar
}
