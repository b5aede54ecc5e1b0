package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPolicyTestExamples runs the shipped case files as a user's CI would.
func TestPolicyTestExamples(t *testing.T) {
	code, out := runCLI("policy", "test", "../../examples/")
	if code != 0 || !regexp.MustCompile(`(?m)^[1-9][0-9]* passed, 0 failed$`).MatchString(out) {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// TestPolicyTestDecisionTables: the engine's own decision tables, which reach
// every reason code a request can get, pass through the command too.
func TestPolicyTestDecisionTables(t *testing.T) {
	files, err := filepath.Glob("../../internal/engine/testdata/decisions/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("tables %v: %v", files, err)
	}
	junit := filepath.Join(t.TempDir(), "junit.xml")
	code, out := runCLI(append([]string{"policy", "test", "--junit", junit}, files...)...)
	m := regexp.MustCompile(`(?m)^(\d+) passed, 0 failed$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("exit %d\n%s", code, out)
	}
	n, _ := strconv.Atoi(m[1])
	s := readJUnit(t, junit)
	total := 0
	for _, suite := range s.Suites {
		total += suite.Tests
		if suite.Failures != 0 || suite.Errors != 0 {
			t.Errorf("suite %s: %+v", suite.Name, suite)
		}
	}
	if n < 150 || total != n || len(s.Suites) != len(files) {
		t.Fatalf("%d passed, JUnit has %d cases in %d suites for %d files", n, total, len(s.Suites), len(files))
	}
}

func readJUnit(t *testing.T, path string) junitSuites {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s junitSuites
	if err := xml.Unmarshal(b, &s); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, b)
	}
	return s
}

const testPolicy = `issuers: [{betterAuthURL: https://auth.example.com}]
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPolicyTestReportsFailures: a failing case is one line with its diff, the
// summary counts it, the exit code is 1, and the JUnit file says the same.
func TestPolicyTestReportsFailures(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"policy.yaml": testPolicy,
		"tasks.test.yaml": `policyFile: policy.yaml
cases:
  - name: hers
    request: { path: /api/6639900d-cfe5-59ec-bd5c-e0e68598457e/tasks }
    token: { claims: { sub: a, uuid: 6639900d-cfe5-59ec-bd5c-e0e68598457e } }
    want: { decision: allow, rule: own-tasks }
  - name: wrongly expected
    request: { path: /api/71c0e039-6d8d-5394-b9e9-ac347e061fd0/tasks }
    want: { decision: deny, status: 403, reason: owner_mismatch }
`,
		"notes.yaml": "not a case file: only *.test.yaml are read from a folder\n",
	})
	junit := filepath.Join(dir, "out.xml")
	code, out := runCLI("policy", "test", "--junit", junit, dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL " + filepath.Join(dir, "tasks.test.yaml") + ": wrongly expected: status -403 +401; reason -owner_mismatch +token_missing",
		"1 passed, 1 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PASS") || strings.Count(out, "\n") != 2 {
		t.Errorf("want exactly the failing line and the summary:\n%s", out)
	}
	s := readJUnit(t, junit)
	if len(s.Suites) != 1 || s.Suites[0].Tests != 2 || s.Suites[0].Failures != 1 {
		t.Fatalf("JUnit %+v", s)
	}
	c := s.Suites[0].Cases[1]
	if c.Name != "wrongly expected" || c.Failure == nil || !strings.Contains(c.Failure.Message, "reason -owner_mismatch +token_missing") || s.Suites[0].Cases[0].Failure != nil {
		t.Fatalf("JUnit cases %+v", s.Suites[0].Cases)
	}
}

// TestPolicyTestPolicyAndNow: --policy serves case files that name none (the
// chart's helm test), and --now moves every case in time.
func TestPolicyTestPolicyAndNow(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"policy.yaml": testPolicy,
		// exp is absolute: an hour after the default now.
		"t.test.yaml": `cases:
  - name: valid until 09:00
    request: { path: /api/6639900d-cfe5-59ec-bd5c-e0e68598457e/tasks }
    token: { claims: { sub: a, uuid: 6639900d-cfe5-59ec-bd5c-e0e68598457e, exp: 1800003600, iat: 1800000000 } }
    want: { decision: allow }
`,
	})
	cases := filepath.Join(dir, "t.test.yaml")
	if code, out := runCLI("policy", "test", cases); code != 1 || !strings.Contains(out, "names no policy") || !strings.Contains(out, "0 passed, 0 failed, 1 case file(s) could not run") {
		t.Fatalf("without --policy: exit %d\n%s", code, out)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if code, out := runCLI("policy", "test", "--policy", pol, cases); code != 0 || !strings.Contains(out, "1 passed, 0 failed") {
		t.Fatalf("with --policy: exit %d\n%s", code, out)
	}
	if code, out := runCLI("policy", "test", "--policy", pol, "--now", "2027-01-15T09:30:00Z", cases); code != 1 || !strings.Contains(out, "decision -allow +deny (token_expired:") {
		t.Fatalf("--now after exp: exit %d\n%s", code, out)
	}
}

// TestPolicyTestRefusesWhatCannotRun: a broken case file, a missing file, no
// argument: errors, never a pass.
func TestPolicyTestRefusesWhatCannotRun(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"typo.test.yaml":   "policy: |\n  issuers: [{betterAuthURL: https://a.example.com}]\ncases: [{name: a, request: {path: /}, wnat: {decision: allow}}]\n",
		"badpol.test.yaml": "policy: |\n  isuers: []\ncases: [{name: a, request: {path: /}, want: {decision: allow}}]\n",
	})
	code, out := runCLI("policy", "test", dir)
	if code != 1 || strings.Count(out, "ERROR ") != 2 || !strings.Contains(out, "wnat") || !strings.Contains(out, "isuers") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if code, out := runCLI("policy", "test", filepath.Join(dir, "missing.test.yaml")); code != 1 {
		t.Fatalf("missing file: exit %d\n%s", code, out)
	}
	if code, _ := runCLI("policy", "test"); code != 2 {
		t.Fatalf("no argument: exit %d", code)
	}
	if code, out := runCLI("policy", "test", t.TempDir()); code != 1 || !strings.Contains(out, "no *.test.yaml") {
		t.Fatalf("empty folder: exit %d\n%s", code, out)
	}
}

// TestServeFragmentFlags: the fragment flags refuse what cannot be meant before
// anything starts.
func TestServeFragmentFlags(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--policy-namespaces", "a"}, 2, "needs --policy-selector"},
		{[]string{"--policy-selector", "x=y", "--policy-namespaces", " , "}, 2, "lists no namespace"},
		{[]string{"--policy-selector", "a in (", "--kubeconfig", kc}, 1, "label selector"},
		{[]string{"--policy-selector", ",", "--kubeconfig", kc}, 1, "label selector"},
		{[]string{"--policy-selector", "x=y", "--policy-namespaces", "a/b", "--kubeconfig", kc}, 1, "not a namespace"},
	} {
		code, out := runCLI(append([]string{"serve", "--config", pol, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %d mentioning %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
	}
}
