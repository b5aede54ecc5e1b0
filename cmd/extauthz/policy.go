package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/token"
)

func cmdPolicy(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr("policy check [--strict] FILE | policy explain --config FILE --method M --path P | policy test FILE|DIR… | policy schema")
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(args[1:], stdout)
	case "test":
		return cmdPolicyTest(args[1:], stdout)
	case "explain":
		return cmdPolicyExplain(args[1:], stdout)
	case "schema":
		if len(args) > 1 {
			return usageErr("policy schema takes no arguments")
		}
		_, err := stdout.Write(policy.Schema)
		return err
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
		fmt.Fprintf(stdout, "issuer %s (aud %s, jwks %s, algs %v)\n", is.Issuer, strings.Join(is.Audiences, ","), jwksurl.Redact(is.JWKSURL), is.Algorithms)
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
	keys, err := explainKeys(stdout, p, &kf, raw != "")
	if err != nil {
		return err
	}
	snap, err := engine.NewSnapshot(p, keys, token.Config{Now: at.clock()})
	if err != nil {
		return err
	}
	e := engine.New(engine.Config{})
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
	for _, h := range d.SetHeaders {
		fmt.Fprintf(stdout, "set header: %s: %s\n", h.Name, h.Value)
	}
	for _, h := range d.RemoveHeaders {
		fmt.Fprintf(stdout, "remove header: %s\n", h)
	}
	for _, sd := range d.Shadow {
		// What the rule would do once enforced; it did not decide.
		if sd.Unknown {
			fmt.Fprintf(stdout, "shadow rule %s: unknown (%s)\n", sd.Rule, sd.Detail)
			continue
		}
		fmt.Fprintf(stdout, "shadow rule %s: would %s %d", sd.Rule, strings.ToUpper(decisionWord(sd.Allow)), sd.Status)
		if !sd.Allow {
			fmt.Fprintf(stdout, " (reason %s: %s)", sd.Reason, sd.Detail)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func decisionWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// explainKeys gives every issuer its keys: those of --jwks-url or --jwks-file when
// given, else each issuer's own JWKS, fetched once. Without a token no key is
// needed, and none is fetched. An issuer whose JWKS cannot be fetched gets no keys
// (its tokens are jwks_unavailable, as serve would answer), with a warning.
func explainKeys(w io.Writer, p *policy.Policy, kf *keyFlags, needed bool) (engine.KeysFor, error) {
	if !needed {
		return engine.SameKeys(keyset.Static{}), nil
	}
	if kf.jwksFile != "" || kf.jwksURL != "" {
		keys, err := kf.load(true)
		if err != nil {
			return nil, err
		}
		return engine.SameKeys(keys), nil
	}
	byIssuer := make(map[string]keyset.Static, len(p.Issuers))
	for _, is := range p.Issuers {
		keys, _, err := jwkscache.Fetch(context.Background(), is.JWKSURL, is.AllowInsecureJWKS, 0)
		if err != nil {
			fmt.Fprintf(w, "warning: issuer %s: jwks: %v\n", is.Issuer, err)
			keys = keyset.Static{}
		}
		byIssuer[is.Issuer] = keys
	}
	return func(is policy.Issuer) token.KeySource { return byIssuer[is.Issuer] }, nil
}
