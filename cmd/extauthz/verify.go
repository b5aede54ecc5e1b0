package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// cmdVerifyJWKS fetches a JWKS, validates every key as serve would, and lists the
// usable ones; it fails when none is usable.
func cmdVerifyJWKS(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify-jwks", flag.ContinueOnError)
	insecure := fs.Bool("allow-insecure", false, "accept plain http on a non-loopback host")
	timeout := fs.Duration("timeout", 5*time.Second, "fetch timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("verify-jwks takes one URL, e.g. https://auth.example.com/api/auth/jwks")
	}
	keys, skipped, err := jwkscache.Fetch(context.Background(), fs.Arg(0), *insecure, *timeout)
	for _, s := range skipped {
		fmt.Fprintf(stdout, "skipped: %s\n", s)
	}
	if err != nil {
		return fmt.Errorf("jwks not usable: %w", err)
	}
	printKeys(stdout, keys)
	fmt.Fprintf(stdout, "ok: %d usable key(s)\n", len(keys))
	return nil
}

func printKeys(w io.Writer, keys keyset.Static) {
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	fmt.Fprintf(w, "%-34s %-4s %-10s %s\n", "KID", "KTY", "CRV", "ALG")
	for _, kid := range kids {
		k := keys[kid]
		kty, crv := k.Describe()
		alg := string(k.Alg)
		if alg == "" {
			alg = "(none)"
		}
		fmt.Fprintf(w, "%-34s %-4s %-10s %s\n", kid, kty, crv, alg)
	}
}

// keyFlags are the flags that say where verification keys come from.
type keyFlags struct {
	jwksURL, jwksFile string
	insecure          bool
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.jwksURL, "jwks-url", "", "JWKS URL to fetch keys from")
	fs.StringVar(&k.jwksFile, "jwks-file", "", "JWKS file to read keys from (instead of --jwks-url)")
	fs.BoolVar(&k.insecure, "allow-insecure", false, "accept a plain-http JWKS URL on a non-loopback host")
}

func (k *keyFlags) load(required bool) (keyset.Static, error) {
	switch {
	case k.jwksFile != "" && k.jwksURL != "":
		return nil, usageErr("give --jwks-url or --jwks-file, not both")
	case k.jwksFile != "":
		b, err := os.ReadFile(k.jwksFile)
		if err != nil {
			return nil, err
		}
		keys, _, err := keyset.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.jwksFile, err)
		}
		return keys, nil
	case k.jwksURL != "":
		keys, _, err := jwkscache.Fetch(context.Background(), k.jwksURL, k.insecure, 0)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		return keys, nil
	case required:
		return nil, usageErr("give --jwks-url URL or --jwks-file FILE")
	}
	return nil, nil
}

// timeFlag parses --at as RFC 3339 or Unix seconds.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		f.t = time.Unix(n, 0)
		return nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("want RFC 3339 or Unix seconds")
	}
	f.t = t
	return nil
}

// clock is the verifier's clock: nil (time.Now) unless --at was given.
func (f *timeFlag) clock() func() time.Time {
	if f.t.IsZero() {
		return nil
	}
	t := f.t
	return func() time.Time { return t }
}

// readToken takes --token, where "-" reads standard input.
func readToken(v string) (string, error) {
	if v == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, token.MaxSize+1))
		if err != nil {
			return "", err
		}
		v = string(b)
	}
	return strings.TrimSpace(v), nil
}

// cmdVerifyToken verifies one token as serve would, printing its header, claims
// and the reason code of a failure. Exit status 0 only when the token is valid.
func cmdVerifyToken(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify-token", flag.ContinueOnError)
	var kf keyFlags
	kf.register(fs)
	tok := fs.String("token", "", "the JWT (\"-\" reads standard input)")
	issuer := fs.String("issuer", "", "expected iss (default: the token's own iss, which is then not pinned)")
	audience := fs.String("audience", "", "expected aud (default: the issuer, as Better Auth sets it)")
	leeway := fs.Duration("leeway", token.DefaultLeeway, "allowed clock skew")
	var at timeFlag
	fs.Var(&at, "at", "verify as of this time (RFC 3339 or Unix seconds) instead of now")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := readToken(*tok)
	if err != nil {
		return err
	}
	if raw == "" {
		return usageErr("give --token T")
	}
	keys, err := kf.load(true)
	if err != nil {
		return err
	}
	hdr, claims := peek(raw)
	fmt.Fprintf(stdout, "header: %s\nclaims: %s\n", hdr, claims)

	iss := *issuer
	if iss == "" {
		var c struct {
			Iss string `json:"iss"`
		}
		_ = json.Unmarshal([]byte(claims), &c)
		iss = c.Iss
		fmt.Fprintf(stdout, "note: issuer not given; checking against the token's own iss %q\n", iss)
	}
	aud := *audience
	if aud == "" {
		aud = iss
	}
	lw := *leeway
	switch {
	case lw < 0:
		return usageErr("--leeway must not be negative")
	case lw == 0:
		lw = token.NoLeeway
	}
	v, err := token.NewVerifier(token.Config{
		Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{aud}, Keys: keys}},
		Leeway:  lw,
		Now:     at.clock(),
	})
	if err != nil {
		return err
	}
	c, err := v.Verify(context.Background(), raw)
	if err != nil {
		var re *reason.Error
		if errors.As(err, &re) {
			fmt.Fprintf(stdout, "reason: %s\n", re.Code)
		}
		return fmt.Errorf("token invalid: %w", err)
	}
	fmt.Fprintf(stdout, "reason: (none)\nvalid: kid %s, alg %s, sub %q, expires %s\n",
		c.KID(), c.Alg(), c.Subject, c.Expiry().Format(time.RFC3339))
	return nil
}

// peek decodes a token's header and claims for display only, without trusting them.
func peek(raw string) (header, claims string) {
	parts := strings.SplitN(raw, ".", 3)
	dec := func(i int) string {
		if i >= len(parts) {
			return "(missing)"
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return "(not base64url)"
		}
		return string(b)
	}
	return dec(0), dec(1)
}
