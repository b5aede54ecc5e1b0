// Package jwksurl holds the rules for JWKS endpoint URLs (HTTPS unless loopback or
// allowed explicitly) and their redaction for logs, so that validating a policy
// needs no HTTP client.
package jwksurl

import (
	"fmt"
	"net"
	"net/url"
)

// Check enforces HTTPS for JWKS URLs, except for loopback hosts (local development
// and tests) or when allowInsecure is set explicitly.
func Check(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, credentials included.
		return fmt.Errorf("jwks url %q does not parse", Redact(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("jwks url %q: no host", Redact(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowInsecure || IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("jwks url %q: https is required (set allowInsecureJWKS to accept plain http)", Redact(raw))
	default:
		return fmt.Errorf("jwks url %q: scheme must be https", Redact(raw))
	}
}

// Redact is a URL fit for logs, Events and metric labels: userinfo and query
// (where tokens and API keys hide) are removed. An unparsable URL is replaced whole.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.String()
}

// IsLoopback reports whether host names this machine (localhost, 127.0.0.0/8, ::1).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
