package policy

import "errors"

// MaxMethodLength bounds a request method; the longest registered one has 17 bytes.
const MaxMethodLength = 32

// Errors from CheckMethod; both mean "deny with method_rejected".
var (
	ErrMethodInvalid = errors.New("method is not an HTTP token")
	ErrMethodCase    = errors.New("method is not upper-case")
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
