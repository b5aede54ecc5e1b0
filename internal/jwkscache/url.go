package jwkscache

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// CheckURL enforces HTTPS for JWKS URLs, except for loopback hosts (local development
// and tests) or when allowInsecure is set explicitly.
func CheckURL(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, credentials included.
		return fmt.Errorf("jwks url %q does not parse", RedactURL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("jwks url %q: no host", RedactURL(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowInsecure || IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("jwks url %q: https is required (set allowInsecureJWKS to accept plain http)", RedactURL(raw))
	default:
		return fmt.Errorf("jwks url %q: scheme must be https", RedactURL(raw))
	}
}

// RedactURL is a URL fit for logs, Events and metric labels: userinfo and query
// (where tokens and API keys hide) are removed. An unparsable URL is replaced whole.
func RedactURL(raw string) string {
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

// NewHTTPClient returns the client a Cache uses when Config.Client is nil: bounded
// in time, at most three redirects, none from https to http or to a URL CheckURL
// refuses.
func NewHTTPClient(timeout time.Duration, allowInsecure bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			// Once on https, never back to plain http, not even to loopback: a
			// redirect must not hand the key set to whoever answers in clear.
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
			}
			return CheckURL(req.URL.String(), allowInsecure)
		},
	}
}
