package jwkscache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
)

// Fetch downloads and parses a JWKS once, with the same checks as a Cache (HTTPS
// rule, size limit, key filtering). The CLI's verify-jwks uses it.
func Fetch(ctx context.Context, rawURL string, allowInsecure bool, timeout time.Duration) (keys keyset.Static, skipped []string, err error) {
	if err := jwksurl.Check(rawURL, allowInsecure); err != nil {
		return nil, nil, err
	}
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fetchKeys(ctx, NewHTTPClient(timeout, allowInsecure), rawURL)
}

func fetchKeys(ctx context.Context, client *http.Client, rawURL string) (keyset.Static, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	shown := jwksurl.Redact(rawURL)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Its message quotes the URL (of the last redirect, too) in full.
			ue.URL = jwksurl.Redact(ue.URL)
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodySize))
		return nil, nil, fmt.Errorf("GET %s: status %d", shown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: reading body: %w", shown, err)
	}
	if len(body) > MaxBodySize {
		return nil, nil, fmt.Errorf("GET %s: body larger than %d bytes", shown, MaxBodySize)
	}
	return keyset.Parse(body)
}
