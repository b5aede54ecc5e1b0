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

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

// cmdVerifyJWKS fetches a JWKS and lists its usable keys (the seed's verify_jwks.py).
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

func printKeys(w io.Writer, keys jwkscache.Static) {
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

func (k *keyFlags) load(required bool) (jwkscache.Static, error) {
	switch {
	case k.jwksFile != "" && k.jwksURL != "":
		return nil, usageErr("give --jwks-url or --jwks-file, not both")
	case k.jwksFile != "":
		b, err := os.ReadFile(k.jwksFile)
		if err != nil {
			return nil, err
		}
		keys, _, err := jwkscache.ParseSet(b)
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

func (f *timeFlag) clock() []token.Option {
	if f.t.IsZero() {
		return nil
	}
	t := f.t
	return []token.Option{token.WithClock(func() time.Time { return t })}
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

// cmdVerifyToken verifies one token and explains the result (the seed's
// test_jwt_verification.py). Exit status 0 only when the token is valid.
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
	opts := append([]token.Option{token.WithLeeway(*leeway)}, at.clock()...)
	v, err := token.NewVerifier([]token.Issuer{{Issuer: iss, Audiences: []string{aud}, Keys: keys}}, opts...)
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
		c.KID, c.Alg, c.Subject, c.Expiry.UTC().Format(time.RFC3339))
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

func cmdPolicy(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr("policy check [--strict] FILE | policy explain --config FILE --method M --path P")
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(args[1:], stdout)
	case "explain":
		return cmdPolicyExplain(args[1:], stdout)
	}
	return usageErr("unknown policy subcommand %q", args[0])
}

func cmdPolicyCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(stdout)
	strict := fs.Bool("strict", false, "treat lint warnings as errors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("policy check [--strict] takes one FILE")
	}
	file := fs.Arg(0)
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	p, err := policy.Load(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, is := range p.Issuers {
		fmt.Fprintf(stdout, "issuer %s (aud %s, jwks %s, algs %v)\n", is.Issuer, strings.Join(is.Audiences, ","), jwkscache.RedactURL(is.JWKSURL), is.Algorithms)
	}
	for _, r := range p.Rules {
		fmt.Fprintf(stdout, "rule %s\n", r.Name)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if *strict && len(p.Warnings) > 0 {
		return fmt.Errorf("%s: %d lint warning(s) with --strict", file, len(p.Warnings))
	}
	fmt.Fprintf(stdout, "ok: %s is valid (hash %s)\n", file, p.Hash)
	return nil
}

func cmdPolicyExplain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	var kf keyFlags
	kf.register(fs)
	cfgFile := fs.String("config", "", "policy file")
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "", "request path (query string allowed)")
	host := fs.String("host", "localhost", "request host (the Host header)")
	tok := fs.String("token", "", "Bearer token (\"-\" reads standard input)")
	origin := fs.String("origin", "", "Origin header (for CORS preflight)")
	preflight := fs.String("preflight-method", "", "Access-Control-Request-Method header")
	var at timeFlag
	fs.Var(&at, "at", "decide as of this time (RFC 3339 or Unix seconds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgFile == "" || *path == "" {
		return usageErr("give --config FILE and --path P")
	}
	b, err := os.ReadFile(*cfgFile)
	if err != nil {
		return err
	}
	p, err := policy.Load(b)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgFile, err)
	}
	raw, err := readToken(*tok)
	if err != nil {
		return err
	}
	var keys jwkscache.Static
	if raw != "" {
		if kf.jwksFile == "" && kf.jwksURL == "" && len(p.Issuers) > 0 {
			kf.jwksURL = p.Issuers[0].JWKSURL
			kf.insecure = p.Issuers[0].AllowInsecureJWKS
		}
		if keys, err = kf.load(true); err != nil {
			return err
		}
	}
	snap, err := engine.BuildStatic(p, keys, at.clock()...)
	if err != nil {
		return err
	}
	e := engine.New(nil, nil)
	e.Swap(snap)
	req := &engine.Request{Method: *method, Path: *path, Host: *host, Origin: *origin, PreflightMethod: *preflight}
	if raw != "" {
		req.Authorization = []string{"Bearer " + raw}
	}
	d := e.Decide(context.Background(), req)
	verdict := "DENY"
	if d.Allow {
		verdict = "ALLOW"
	}
	fmt.Fprintf(stdout, "decision: %s %d\nrule: %s\n", verdict, d.Status, d.Rule)
	if !d.Allow {
		fmt.Fprintf(stdout, "reason: %s\ndetail: %s\n", d.Reason, d.Detail)
	}
	for _, h := range d.Set {
		fmt.Fprintf(stdout, "set header: %s: %s\n", h.Name, h.Value)
	}
	for _, h := range d.Remove {
		fmt.Fprintf(stdout, "remove header: %s\n", h)
	}
	return nil
}
