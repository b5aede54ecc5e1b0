//go:build envtest

package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// renderedRules renders the chart's alert rules with its defaults.
func renderedRules(t *testing.T) ruleGroups {
	t.Helper()
	rules := objects(t, render(t, "--set", "betterAuth.url=https://auth.example.com",
		"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"))["PrometheusRule"]
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules rendered", len(rules))
	}
	var pr struct{ Spec ruleGroups }
	if err := yaml.Unmarshal([]byte(rules[0]), &pr); err != nil {
		t.Fatal(err)
	}
	return pr.Spec
}

// TestAlertsFire runs promtool's rule unit tests: a scenario per alert, including
// an issuer never fetched, every pod gone and low traffic.
func TestAlertsFire(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Fatal("PROMTOOL is not set: run `make deploy-test`, which installs promtool")
	}
	spec := renderedRules(t)
	for gi := range spec.Groups {
		for ri := range spec.Groups[gi].Rules {
			// The scenarios check when alerts fire and with which labels; the
			// annotations are text, checked by TestAlertsHaveRunbooks.
			spec.Groups[gi].Rules[ri].Annotations = nil
		}
	}
	dir := t.TempDir()
	out, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, promtool, "check", "rules", filepath.Join(dir, "rules.yaml"))
	t.Log(runTool(t, promtool, "test", "rules", filepath.Join(dir, "alerts.test.yaml")))

	// Every alert has a scenario in which it fires.
	var suite struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &suite); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range suite.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] {
				t.Errorf("no promtool scenario makes %s fire", r.Alert)
			}
		}
	}
}

// TestAlertsHaveRunbooks: every alert links to a README section that exists.
func TestAlertsHaveRunbooks(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(readme), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	for _, g := range renderedRules(t).Groups {
		for _, r := range g.Rules {
			url := r.Annotations["runbook_url"]
			base, anchor, ok := strings.Cut(url, "#")
			if !ok || !strings.HasSuffix(base, "/README.md") {
				t.Errorf("%s: runbook_url %q is not a README section", r.Alert, url)
				continue
			}
			if !anchors[anchor] {
				t.Errorf("%s: the README has no section #%s", r.Alert, anchor)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s has no summary", r.Alert)
			}
		}
	}
}

// githubAnchor is the id GitHub gives a heading: lower case, spaces to dashes,
// punctuation other than - and _ dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestPrometheusRuleNeedsServiceMonitor: the rules select series by the labels the
// ServiceMonitor's scrape adds; without it every alert would stay silent.
func TestPrometheusRuleNeedsServiceMonitor(t *testing.T) {
	_, err := tryTool(helm, "template", "extauthz", chart(), "--set", "betterAuth.url=https://a.example.com", "--set", "prometheusRule.enabled=true")
	if err == nil || !strings.Contains(err.Error(), "needs serviceMonitor.enabled") {
		t.Fatalf("prometheusRule without serviceMonitor: %v", err)
	}
}
