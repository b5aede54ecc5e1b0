package policy

import (
	"errors"
	"strings"
)

// MaxMethodLength bounds a request method; the longest registered one has 17 bytes.
const MaxMethodLength = 32

// Errors from CheckMethod; both mean "deny with method_rejected".
var (
	ErrMethodInvalid = errors.New("method is not an HTTP token")
	ErrMethodCase    = errors.New("method is not upper-case")
	ErrMethodParam   = errors.New("query has a _method parameter")
)

// MethodOverrideHeaders are the headers with which Symfony, Laravel, Rack and others
// let a POST act as another method. A rule judges the request's method, so these
// must never reach the backend on allow.
var MethodOverrideHeaders = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// CheckMethod refuses methods that are not upper-case HTTP tokens.
//
// Methods are case-sensitive (RFC 9110 §9.1), but backends disagree on "delete":
// Werkzeug and some Node routers upper-case it and run the DELETE handler, Go's
// ServeMux treats it as a different method. Rather than guess, a method with a
// lower-case letter is refused; every browser and HTTP library sends upper case.
func CheckMethod(m string) error {
	if m == "" || len(m) > MaxMethodLength {
		return ErrMethodInvalid
	}
	lower := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z':
			lower = true
		case isTokenSymbol(c):
		default:
			return ErrMethodInvalid
		}
	}
	if lower {
		return ErrMethodCase
	}
	return nil
}

// isTokenSymbol reports the non-alphanumeric tchar of RFC 9110 §5.6.2.
func isTokenSymbol(c byte) bool {
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// CheckQuery refuses a request whose query string (in raw, a path as the proxy
// forwards it) carries a _method parameter: Laravel and Symfony let it turn a POST
// into a PUT or DELETE, which the rule judging POST never saw. Unlike a header,
// a query parameter cannot be removed on allow. Keys are compared as PHP reads
// them: %-decoded, leading spaces dropped, " ", "." and "[" turned into "_",
// case ignored, and "_method[]" or "_method.x" count too.
func CheckQuery(raw string) error {
	i := strings.IndexByte(raw, '?')
	if i < 0 {
		return nil
	}
	for q := raw[i+1:]; q != ""; {
		var part string
		part, q, _ = cutAny(q, "&;")
		key, _, _ := strings.Cut(part, "=")
		if len(key) < len("_method") {
			continue
		}
		if isMethodParam(phpKey(key)) {
			return ErrMethodParam
		}
	}
	return nil
}

// phpKey decodes a query key as PHP does: "+" is a space, a valid %XX escape is
// decoded, an invalid one is kept as it is, and the key ends at the first NUL
// (PHP measures it with strlen), so "%5Fmethod%00%zz" is "_method". url.QueryUnescape
// would refuse the invalid escape and leave the key unread.
func phpKey(key string) string {
	if !strings.ContainsAny(key, "%+") {
		return key
	}
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(key) && isHex(key[i+1]) && isHex(key[i+2]):
			c = unhex(key[i+1])<<4 | unhex(key[i+2])
			i += 2
		}
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

func cutAny(s, seps string) (before, after string, found bool) {
	if i := strings.IndexAny(s, seps); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func isMethodParam(key string) bool {
	key = strings.TrimLeft(key, " ")
	const want = "_method"
	if len(key) < len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		c := key[i]
		switch {
		case c == ' ' || c == '.' || c == '[':
			c = '_'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
