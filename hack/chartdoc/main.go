// Command chartdoc writes the Helm chart's README from values.yaml: every key with
// its default and the comment above it, so the chart's documentation cannot drift
// from its values. `make generate` runs it; a deploy test fails on drift.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

func main() {
	chart := flag.String("chart", "deploy/helm/extauthz", "the chart's folder")
	check := flag.Bool("check", false, "fail if README.md differs instead of writing it")
	flag.Parse()
	if err := run(*chart, *check); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}

func run(chart string, check bool) error {
	raw, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return errors.New("values.yaml is not a mapping")
	}
	var rows []row
	walk(root.Content[0], "", &rows)
	out := render(rows)
	path := filepath.Join(chart, "README.md")
	if check {
		have, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, out) {
			return fmt.Errorf("%s is out of date: run make generate", path)
		}
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

type row struct{ key, def, doc string }

// walk lists the keys of a mapping with their defaults and the comment written
// above each (or beside it), descending into mappings whose keys are documented.
func walk(m *yaml.Node, prefix string, rows *[]row) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		doc := comment(k.HeadComment)
		if v.Kind == yaml.MappingNode && len(v.Content) > 0 && v.Style&yaml.FlowStyle == 0 && documented(v) {
			if doc != "" {
				*rows = append(*rows, row{key: key, doc: doc})
			}
			walk(v, key+".", rows)
			continue
		}
		if doc == "" {
			doc = comment(k.LineComment + v.LineComment)
		}
		*rows = append(*rows, row{key: key, def: value(v), doc: doc})
	}
}

// documented tells whether any key of a mapping has a comment of its own: one
// whose keys have none (resources, securityContext) reads better as one value.
func documented(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].HeadComment != "" || m.Content[i].LineComment != "" || m.Content[i+1].LineComment != "" {
			return true
		}
	}
	return false
}

func comment(c string) string {
	var lines []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, " ")
}

func value(v *yaml.Node) string {
	var x any
	if err := v.Decode(&x); err != nil {
		return "?"
	}
	b, err := json.Marshal(x)
	if err != nil {
		return "?"
	}
	return string(b)
}

func render(rows []row) []byte {
	var b bytes.Buffer
	b.WriteString(`# extauthz Helm chart

External authorization for Envoy, Istio, nginx and Traefik that verifies Better Auth
credentials and applies ownership policies. The project's README explains the policy,
the proxies' wiring and the alerts; this page lists the chart's values. It is generated
from values.yaml (make generate): edit the comments there.

` + "```sh" + `
helm upgrade --install extauthz deploy/helm/extauthz -n extauthz --create-namespace \
  --set betterAuth.url=https://auth.example.com --wait --rollback-on-failure
helm test extauthz -n extauthz
` + "```" + `

| key | default | description |
|---|---|---|
`)
	for _, r := range rows {
		def := ""
		if r.def != "" {
			def = "`" + strings.ReplaceAll(r.def, "|", `\|`) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.key, def, strings.ReplaceAll(r.doc, "|", `\|`))
	}
	return b.Bytes()
}
