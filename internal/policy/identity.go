package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// compileIdentity validates the identity headers (DefaultIdentityHeaders when the
// policy names none), sorted by name, and lists every other "_"/"-" spelling of
// them and of the method-override headers.
func compileIdentity(c IdentityConfig) (hs []IdentityHeader, spelt []string, err error) {
	headers := c.Headers
	if headers == nil {
		headers = DefaultIdentityHeaders
	}
	for name, claim := range headers {
		if err := checkHeaderName(name); err != nil {
			return nil, nil, fmt.Errorf("identity.headers[%q]: %w", name, err)
		}
		if claim == "" {
			return nil, nil, fmt.Errorf("identity.headers[%q]: claim is empty", name)
		}
		hs = append(hs, IdentityHeader{Name: name, Claim: claim})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	for _, h := range hs {
		spelt = append(spelt, spellings(h.Name)...)
	}
	for _, h := range MethodOverrideHeaders {
		spelt = append(spelt, spellings(h)...)
	}
	return hs, spelt, nil
}

// reservedHeaders may not be used as identity headers: overwriting them would
// change routing, framing, authentication, the client address a backend logs or
// trusts, or the method it runs.
var reservedHeaders = []string{
	"authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding",
	"connection", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization", "x-envoy-auth-headers-to-remove",
	"forwarded", "x-real-ip", "x-request-id", "x-auth-method",
}

// reservedPrefixes are families of reserved names.
var reservedPrefixes = []string{"x-envoy-", "x-forwarded-", "x-original-"}

// maxHeaderHyphens bounds the "-" in an identity header name: each doubles the
// spellings a front door must remove.
const maxHeaderHyphens = 5

// spellings returns name with every non-empty choice of its "-" replaced by "_".
func spellings(name string) []string {
	var at []int
	for i := 0; i < len(name); i++ {
		if name[i] == '-' {
			at = append(at, i)
		}
	}
	out := make([]string, 0, 1<<len(at)-1)
	for mask := 1; mask < 1<<len(at); mask++ {
		b := []byte(name)
		for bit, i := range at {
			if mask&(1<<bit) != 0 {
				b[i] = '_'
			}
		}
		out = append(out, string(b))
	}
	return out
}

func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("header name is empty")
	}
	if strings.Count(name, "-") > maxHeaderHyphens {
		return fmt.Errorf("header name has more than %d '-'", maxHeaderHyphens)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			// No "_": CGI and WSGI backends read x_user_id and x-user-id as one variable.
			return errors.New("header name must be lower-case letters, digits and -")
		}
	}
	if slices.Contains(reservedHeaders, name) || slices.Contains(MethodOverrideHeaders, name) {
		return errors.New("header name is reserved")
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return errors.New("header name is reserved")
		}
	}
	return nil
}
