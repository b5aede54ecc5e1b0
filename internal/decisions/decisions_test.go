package decisions_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/decisions"
)

func TestParseIsStrict(t *testing.T) {
	for doc, want := range map[string]string{
		"": "empty",
		"policy: x\ncases: [{name: a, want: {}}]\n":                            "want.decision",
		"policy: x\ncases: [{want: {decision: allow}}]\n":                      "name is required",
		"policy: x\ncases: [{name: a, want: {decision: allow, staus: 200}}]\n": "staus",
		"policy: x\n":            "no cases",
		"policy: x\ncases: []\n": "no cases",
		"policy: x\ncases: [{name: a, want: {decision: deny}}]\n":                                                   "needs want.reason",
		"policy: x\ncases: [{name: a, want: {decision: allow}}]\n---\ncases: []\n":                                  "more than one document",
		"policy: x\ncases: [{name: a, want: {decision: allow, shadow: [{rule: r, decision: maybe}]}}]\n":            "allow, deny or unknown",
		"policy: x\ncases: [{name: a, want: {decision: allow, shadow: [{rule: r, decision: deny}]}}]\n":             "a deny needs a reason",
		"policy: x\ncases: [{name: a, want: {decision: allow, shadow: [{rule: r, decision: allow, reason: x}]}}]\n": "only a deny",
		"policy: x\ncases: [{name: a, want: {decision: allow, shadow: [{decision: allow}]}}]\n":                     "rule is required",
		"policy: x\ncases: [{name: a, request: {headers: {Host: a.example.com}}, want: {decision: allow}}]\n":       "request.host",
		"policy: x\ncases: [{name: a, request: {headers: {X-Forwarded-Uri: /x}}, want: {decision: allow}}]\n":       "the proxy sets it",
		"policy: x\ncases: [{name: a, token: {raw: abc, claims: {sub: a}}, want: {decision: allow}}]\n":             "would be ignored",
		"policy: x\ncases: [{name: a, token: {raw: abc, authorization: Basic x}, want: {decision: allow}}]\n":       "give one of them",
	} {
		if _, err := decisions.Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", doc, err, want)
		}
	}
}

// TestRunReportsEveryDifference: a case that does not get what it wants says what
// differs, field by field.
func TestRunReportsEveryDifference(t *testing.T) {
	table, err := decisions.Parse([]byte(`
policy: |
  issuers: [{betterAuthURL: https://auth.example.com}]
  rules: [{name: open, paths: ["/open"], public: true}]
cases:
  - name: wrong on purpose
    request: {host: a.example, path: /open}
    want: {decision: deny, status: 403, reason: no_rule, rule: other, setHeaders: {x-user-id: a}, removeHeaders: [x-nope]}
  - name: right
    request: {host: a.example, path: /closed}
    token: {claims: {sub: a}}
    want: {decision: deny, status: 403, reason: no_rule, rule: (default)}
`))
	if err != nil {
		t.Fatal(err)
	}
	results, err := table.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || len(results[0].Problems) != 6 || len(results[1].Problems) != 0 {
		t.Fatalf("results %+v", results)
	}
}

// TestRunRefusesWhatCannotBeMeant: mistakes in a table are errors, not passes.
func TestRunRefusesWhatCannotBeMeant(t *testing.T) {
	const pre = "policy: |\n  issuers: [{betterAuthURL: https://auth.example.com}]\n  default: authenticated\n"
	for doc, want := range map[string]string{
		pre + "unavailable: [https://other.example.com]\ncases: [{name: a, request: {path: /}, want: {decision: allow}}]\n":             "not an issuer",
		pre + "cases: [{name: a, request: {path: /}, token: {claims: {exp: '-1 h'}}, want: {decision: deny, reason: token_expired}}]\n": "neither a duration",
		pre + "cases: [{name: a, request: {path: /, proxy: haproxy}, want: {decision: allow}}]\n":                                       "proxy",
	} {
		table, err := decisions.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := table.Run(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
}

// TestREADMETables runs every decision table the README shows, as users would copy it.
func TestREADMETables(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?s)```yaml\n(policy: \\|.*?)```").FindAllSubmatch(readme, -1) {
		n++
		table, err := decisions.Parse(m[1])
		if err != nil {
			t.Fatal(err)
		}
		results, err := table.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			for _, p := range r.Problems {
				t.Errorf("README table, %s: %s", r.Name, p)
			}
		}
	}
	if n == 0 {
		t.Fatal("no decision table in the README")
	}
}
