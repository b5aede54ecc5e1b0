package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestExplainGolden compares policy explain's whole output with golden files, so a
// change in what users read is a reviewed diff (go test -run Golden -update).
func TestExplainGolden(t *testing.T) {
	s := loadSample(t, "EdDSA")
	base := []string{"policy", "explain", "--config", "testdata/explain/policy.yaml", "--host", "api.example.com"}
	withToken := append(base[:len(base):len(base)], "--jwks-file", filepath.Join(s.dir, "jwks.json"), "--token", s.token, "--at", fmt.Sprint(s.iat))
	cases := map[string][]string{
		"own-tasks":    append(withToken, "--path", "/api/"+strings.ToUpper(s.uuid)+"/tasks"),
		"other-tasks":  append(withToken, "--method", "DELETE", "--path", "/api/71c0e039-6d8d-5394-b9e9-ac347e061fd0/tasks/1"),
		"expired":      append(base[:len(base):len(base)], "--jwks-file", filepath.Join(s.dir, "jwks.json"), "--token", s.token, "--at", fmt.Sprint(s.iat+3600), "--path", "/api/"+s.uuid+"/tasks"),
		"no-token":     append(base, "--path", "/api/"+s.uuid+"/tasks"),
		"public":       append(base, "--path", "/healthz"),
		"traversal":    append(base, "--path", "/api/x/../y/tasks"),
		"lower-method": append(base, "--method", "get", "--path", "/healthz"),
		"method-param": append(base, "--method", "POST", "--path", "/healthz?_method=DELETE"),
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			code, out := runCLI(args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			golden := filepath.Join("testdata", "explain", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, out, want)
			}
		})
	}
}

// TestExplainUsesEachIssuersKeys: without --jwks-*, every issuer's own JWKS is
// fetched, so a token of the second issuer verifies too.
func TestExplainUsesEachIssuersKeys(t *testing.T) {
	a, b := tokentest.NewKey(jwa.EdDSA, "a"), tokentest.NewKey(jwa.EdDSA, "b")
	ja, jb := tokentest.NewJWKSServer(t, tokentest.JWKS(a)), tokentest.NewJWKSServer(t, tokentest.JWKS(b))
	cfg := filepath.Join(t.TempDir(), "policy.yaml")
	doc := fmt.Sprintf("issuers: [{betterAuthURL: %q}, {betterAuthURL: %q}]\ndefault: authenticated\n", ja.URL, jb.URL)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, token, want string
	}{
		{"first issuer", a.Sign(tokentest.Claims(ja.URL, "u", "x", now), nil), "decision: ALLOW 200"},
		{"second issuer", b.Sign(tokentest.Claims(jb.URL, "u", "x", now), nil), "decision: ALLOW 200"},
		{"second issuer's claims, first issuer's key", a.Sign(tokentest.Claims(jb.URL, "u", "x", now), nil), "reason: unknown_kid"},
	} {
		code, out := runCLI("policy", "explain", "--config", cfg, "--path", "/x", "--token", tc.token)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %d\n%s", tc.name, code, out)
		}
	}
	if ja.Hits() != 3 || jb.Hits() != 3 {
		t.Errorf("JWKS fetches %d and %d, want one per explain and issuer", ja.Hits(), jb.Hits())
	}
	// The second issuer's JWKS is down: its tokens are jwks_unavailable, the first
	// issuer's still verify.
	jb.Set(503, []byte("down"))
	for tok, want := range map[string]string{
		a.Sign(tokentest.Claims(ja.URL, "u", "x", now), nil): "decision: ALLOW 200",
		b.Sign(tokentest.Claims(jb.URL, "u", "x", now), nil): "reason: jwks_unavailable",
	} {
		code, out := runCLI("policy", "explain", "--config", cfg, "--path", "/x", "--token", tok)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "warning: issuer "+jb.URL) {
			t.Errorf("JWKS down: %d\n%s", code, out)
		}
	}
}

// TestDocumentedPoliciesCheck runs policy check --strict on every policy the README
// shows and every policy file in examples/: what users copy must load, lint-clean.
func TestDocumentedPoliciesCheck(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	for i, m := range blocks {
		if !strings.HasPrefix(string(m[1]), "issuers:") {
			continue // proxy and Kubernetes snippets
		}
		f := filepath.Join(t.TempDir(), fmt.Sprintf("readme-%d.yaml", i))
		if err := os.WriteFile(f, m[1], 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no policy block found in the README")
	}
	examples, _ := filepath.Glob("../../examples/*.yaml")
	examples = slices.DeleteFunc(examples, func(f string) bool { return strings.HasSuffix(f, ".test.yaml") }) // case files
	if len(examples) == 0 {
		t.Fatal("no policy file in examples/")
	}
	for _, f := range append(files, examples...) {
		if code, out := runCLI("policy", "check", "--strict", f); code != 0 {
			t.Errorf("%s: exit %d\n%s", f, code, out)
		}
	}
}
