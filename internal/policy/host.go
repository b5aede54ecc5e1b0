package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// MaxHostLength bounds a request host (a DNS name is at most 253 bytes, plus a port).
const MaxHostLength = 260

// Errors from CanonicalHost; all mean "deny with host_rejected".
var (
	ErrHostEmpty      = errors.New("host is empty")
	ErrHostTooLong    = errors.New("host too long")
	ErrHostPort       = errors.New("host has a malformed port")
	ErrHostColons     = errors.New("host has more than one colon outside brackets")
	ErrHostIPv6       = errors.New("host has a malformed [IPv6] literal")
	ErrHostEmptyLabel = errors.New("host has an empty label")
	ErrHostLabel      = errors.New("host label longer than 63 bytes")
	ErrHostCharacter  = errors.New("host has a character outside letters, digits, '-', '_' and '.'")
)

// CanonicalHost turns a request's Host (or :authority) into the one form host rules
// and request.host see: lower-cased, one trailing dot removed, the port removed.
//
// Envoy keeps a trailing dot unless told otherwise, and DNS resolves
// "api.example.com." to the same backend as "api.example.com", so both must meet
// the same rule. Anything a backend might parse differently from us (a second colon
// outside brackets, an empty label, %-escapes, raw non-ASCII, spaces) is refused:
// browsers send IDNs as punycode, so no legitimate request needs them.
func CanonicalHost(raw string) (string, error) {
	if raw == "" {
		return "", ErrHostEmpty
	}
	if len(raw) > MaxHostLength {
		return "", ErrHostTooLong
	}
	if raw[0] == '[' {
		end := strings.IndexByte(raw, ']')
		if end < 0 {
			return "", ErrHostIPv6
		}
		if err := checkPort(raw[end+1:]); err != nil {
			return "", err
		}
		a, err := netip.ParseAddr(raw[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", ErrHostIPv6
		}
		return "[" + a.String() + "]", nil
	}
	host := raw
	if i := strings.IndexByte(raw, ':'); i >= 0 {
		if strings.IndexByte(raw[i+1:], ':') >= 0 {
			return "", ErrHostColons
		}
		if err := checkPort(raw[i:]); err != nil {
			return "", err
		}
		host = raw[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if err := checkLabels(host); err != nil {
		return "", err
	}
	return lowerASCII(host), nil
}

// checkPort accepts "" or ":" followed by 1 to 5 digits.
func checkPort(s string) error {
	if s == "" {
		return nil
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return ErrHostPort
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return ErrHostPort
		}
	}
	return nil
}

func checkLabels(host string) error {
	if host == "" {
		return ErrHostEmpty
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 {
				return ErrHostEmptyLabel
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return ErrHostCharacter
		}
		label++
		if label > 63 {
			return ErrHostLabel
		}
	}
	if label == 0 {
		return ErrHostEmptyLabel
	}
	return nil
}

// lowerASCII lower-cases s, allocating only when it has an upper-case letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// compileHostPattern validates a rule's host pattern (a name, "*.suffix" or an
// [IPv6] literal) and returns it in canonical form. International names are
// converted to punycode, which is what browsers put in Host.
func compileHostPattern(p string) (string, error) {
	name, wildcard := strings.CutPrefix(p, "*.")
	if name == "" || strings.Contains(name, "*") {
		return "", fmt.Errorf("%q is not a host name or *.suffix", p)
	}
	if strings.HasSuffix(name, ".") {
		return "", fmt.Errorf("%q ends with a dot: write it without (requests with one match anyway)", p)
	}
	if !wildcard && strings.HasPrefix(name, "[") {
		c, err := CanonicalHost(name)
		if err != nil || strings.Contains(name[strings.IndexByte(name, ']'):], ":") {
			return "", fmt.Errorf("%q is not an [IPv6] literal without port", p)
		}
		return c, nil
	}
	if strings.Contains(name, ":") {
		return "", fmt.Errorf("%q has a port: hosts match without the port", p)
	}
	if !isASCII(name) {
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid international domain name: %v", p, err)
		}
		name = a
	}
	if err := checkLabels(name); err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	name = lowerASCII(name)
	if wildcard {
		return "*." + name, nil
	}
	return name, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func hostMatches(patterns []string, host string) bool {
	for _, p := range patterns {
		if p == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}
