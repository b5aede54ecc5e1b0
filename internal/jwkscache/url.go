package jwkscache

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// NewHTTPClient returns the client a Cache uses when Config.Client is nil: bounded
// in time, at most three redirects, none from https to http or to a URL jwksurl.Check
// refuses.
func NewHTTPClient(timeout time.Duration, allowInsecure bool) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: tracing.Transport(nil),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			// Once on https, never back to plain http, not even to loopback: a
			// redirect must not hand the key set to whoever answers in clear.
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
			}
			return jwksurl.Check(req.URL.String(), allowInsecure)
		},
	}
}
