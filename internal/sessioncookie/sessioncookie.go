// Package sessioncookie reads Better Auth's session cookies from a request's Cookie
// headers: <prefix>.session_token (the session token and its HMAC signature) and
// <prefix>.session_data (the cookie cache), with the __Secure- prefix Better Auth
// adds on https and the .0, .1, … chunks it splits large values into. Anything that
// could be read two ways (a name twice, both the chunked and the whole form, both
// with and without __Secure-) is refused rather than guessed at.
package sessioncookie

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// DefaultPrefix is Better Auth's cookie prefix (advanced.cookiePrefix).
const DefaultPrefix = "better-auth"

// maxChunks bounds how many chunks one value may have.
const maxChunks = 16

// Cookies are the Better Auth cookies of one request.
type Cookies struct {
	// Token is the session token: session_token's value without its signature.
	Token string
	// Data is session_data, chunks joined ("" when absent).
	Data string
	// TokenName and TokenValue are the session_token cookie as sent (its value
	// still signed and URL-encoded), to forward to Better Auth's get-session.
	TokenName, TokenValue string
}

// ErrAmbiguous means the cookies could be read in more than one way.
var ErrAmbiguous = errors.New("ambiguous Better Auth cookies")

// Parse reads the cookies named with prefix ("" means DefaultPrefix), in the one
// spelling Better Auth uses: with __Secure- when its baseURL is https (secure), so
// that a plain cookie another subdomain sets (cookie tossing) is ignored; without
// it otherwise. It returns the zero Cookies when the request has none of them.
func Parse(headers []string, prefix string, secure bool) (Cookies, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	parts := map[string]map[int]string{} // base name -> chunk index (-1: whole) -> value
	for _, h := range headers {
		for _, pair := range strings.Split(h, ";") {
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			base, index, ours := ourName(name, prefix)
			if !ours || strings.HasPrefix(base, "__Secure-") != secure {
				continue
			}
			if parts[base] == nil {
				parts[base] = map[int]string{}
			}
			if _, dup := parts[base][index]; dup {
				return Cookies{}, fmt.Errorf("%w: %s twice", ErrAmbiguous, name)
			}
			parts[base][index] = value
		}
	}
	var c Cookies
	token, err := join(parts, prefix+".session_token")
	c.TokenName = prefix + ".session_token"
	if parts["__Secure-"+c.TokenName] != nil {
		c.TokenName = "__Secure-" + c.TokenName
	}
	if err != nil {
		return Cookies{}, err
	}
	if c.Data, err = join(parts, prefix+".session_data"); err != nil {
		return Cookies{}, err
	}
	if token == "" {
		c.TokenName = ""
	} else {
		c.TokenValue = token
		// The value is "<token>.<signature>", URL-encoded.
		v, err := url.QueryUnescape(token)
		if err != nil {
			return Cookies{}, errors.New("session_token is not URL-encoded text")
		}
		c.Token, _, _ = strings.Cut(v, ".")
	}
	return c, nil
}

// ourName maps a cookie name to its base name (with __Secure- kept, so that both
// forms can be told apart) and chunk index, -1 for an unchunked value.
func ourName(name, prefix string) (base string, index int, ok bool) {
	plain := strings.TrimPrefix(name, "__Secure-")
	for _, suffix := range []string{".session_token", ".session_data"} {
		whole := prefix + suffix
		switch {
		case plain == whole:
			return name, -1, true
		case strings.HasPrefix(plain, whole+"."):
			n, err := strconv.Atoi(plain[len(whole)+1:])
			if err != nil || n < 0 || n >= maxChunks {
				return "", 0, false
			}
			return name[:len(name)-len(plain)] + whole, n, true
		}
	}
	return "", 0, false
}

// join returns the value of base (name without __Secure-): whole or chunked, from
// exactly one of the two spellings.
func join(parts map[string]map[int]string, base string) (string, error) {
	plain, secure := parts[base], parts["__Secure-"+base]
	if plain != nil && secure != nil {
		return "", fmt.Errorf("%w: %s with and without __Secure-", ErrAmbiguous, base)
	}
	p := plain
	if p == nil {
		p = secure
	}
	if p == nil {
		return "", nil
	}
	if whole, ok := p[-1]; ok {
		if len(p) > 1 {
			return "", fmt.Errorf("%w: %s both whole and in chunks", ErrAmbiguous, base)
		}
		return whole, nil
	}
	idx := make([]int, 0, len(p))
	for i := range p {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	for want, i := range idx {
		if i != want {
			return "", fmt.Errorf("%w: %s chunk %d missing", ErrAmbiguous, base, want)
		}
		b.WriteString(p[i])
	}
	return b.String(), nil
}
