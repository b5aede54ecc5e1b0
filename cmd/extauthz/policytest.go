package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/decisions"
)

// cmdPolicyTest runs decision tables ("case files") against the real engine: the
// CI step a team runs before a policy change is applied.
func cmdPolicyTest(args []string, stdout io.Writer) error {
	fset := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fset.SetOutput(stdout)
	policyFile := fset.String("policy", "", "policy file for the case files that name none (the deployed policy, in the chart's helm test)")
	junit := fset.String("junit", "", "also write the results as JUnit XML to this file")
	verbose := fset.Bool("v", false, "print passing cases too")
	var now timeFlag
	fset.Var(&now, "now", "decide every case as of this time, whatever the case files say (RFC 3339 or Unix seconds)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() == 0 {
		return usageErr("policy test [--policy FILE] [--now TIME] [--junit FILE] [-v] FILE|DIR…")
	}
	files, err := caseFiles(fset.Args())
	if err != nil {
		return err
	}
	var defaultPolicy string
	if *policyFile != "" {
		b, err := os.ReadFile(*policyFile)
		if err != nil {
			return err
		}
		defaultPolicy = string(b)
	}
	var suites junitSuites
	passed, failed, broken := 0, 0, 0
	for _, file := range files {
		suite := junitSuite{Name: file}
		results, err := runCaseFile(file, defaultPolicy, now)
		if err != nil {
			broken++
			fmt.Fprintf(stdout, "ERROR %s: %v\n", file, err)
			suite.Tests, suite.Errors = 1, 1
			suite.Cases = append(suite.Cases, junitCase{Name: "(case file)", Class: file, Error: &junitFailure{Message: err.Error()}})
			suites.Suites = append(suites.Suites, suite)
			continue
		}
		for _, r := range results {
			c := junitCase{Name: r.Name, Class: file}
			if len(r.Problems) == 0 {
				passed++
				if *verbose {
					fmt.Fprintf(stdout, "PASS %s: %s\n", file, r.Name)
				}
			} else {
				failed++
				diff := diffLine(r.Problems)
				fmt.Fprintf(stdout, "FAIL %s: %s: %s\n", file, r.Name, diff)
				c.Failure = &junitFailure{Message: diff, Text: problemLines(r.Problems)}
				suite.Failures++
			}
			suite.Cases = append(suite.Cases, c)
		}
		suite.Tests = len(suite.Cases)
		suites.Suites = append(suites.Suites, suite)
	}
	summary := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if broken > 0 {
		summary += fmt.Sprintf(", %d case file(s) could not run", broken)
	}
	fmt.Fprintln(stdout, summary)
	if *junit != "" {
		if err := writeJUnit(*junit, suites); err != nil {
			return err
		}
	}
	if failed > 0 || broken > 0 {
		return errReported
	}
	return nil
}

// caseFiles expands the arguments: a file is taken as it is, a folder gives
// every *.test.yaml (or .yml) under it, so that a policy next to its cases is
// not mistaken for one.
func caseFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// A mounted ConfigMap keeps its files in a "..<timestamp>" folder
			// and links them from the top: read the links only.
			if d.IsDir() && path != a && strings.HasPrefix(d.Name(), "..") {
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".test.yaml") || strings.HasSuffix(path, ".test.yml")) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no *.test.yaml case files", a)
		}
		slices.Sort(found)
		out = append(out, found...)
	}
	// A file named twice (itself, and through its folder) runs once.
	seen := map[string]bool{}
	return slices.DeleteFunc(out, func(f string) bool {
		key := filepath.Clean(f)
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		dup := seen[key]
		seen[key] = true
		return dup
	}), nil
}

func runCaseFile(file, defaultPolicy string, now timeFlag) ([]decisions.Result, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	t, err := decisions.Parse(b)
	if err != nil {
		return nil, err
	}
	if err := t.ReadFiles(filepath.Dir(file)); err != nil {
		return nil, err
	}
	if t.Policy == "" {
		if defaultPolicy == "" {
			return nil, errors.New("the case file names no policy (policy or policyFile): give --policy FILE")
		}
		t.Policy = defaultPolicy
	}
	if !now.t.IsZero() {
		t.Now = now.t
	}
	return t.Run(context.Background())
}

// diffLine puts a case's differences on one line: field -want +got.
func diffLine(ps []decisions.Problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s -%s +%s", p.Field, p.Want, p.Got)
		if p.Detail != "" {
			parts[i] += " (" + p.Detail + ")"
		}
	}
	return strings.Join(parts, "; ")
}

func problemLines(ps []decisions.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// JUnit XML as CI systems (GitLab, Jenkins, GitHub's test reporters) read it.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Class   string        `xml:"classname,attr"`
	Failure *junitFailure `xml:"failure,omitempty"`
	Error   *junitFailure `xml:"error,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(path string, s junitSuites) error {
	b, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}
