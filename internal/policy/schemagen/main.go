// Command schemagen writes the JSON Schema of the policy document, generated from
// the policy package's Go types and their comments, and embeds it in the Helm
// chart's values schema so that `helm install` refuses a policy typo. Run through
// `go generate ./internal/policy`; a test fails when the checked-in files drift.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

// durationPattern is what time.ParseDuration reads, which is how the policy's
// YAML decoder reads a duration. A bare number is refused: YAML would take it as
// nanoseconds, never what was meant.
const durationPattern = `^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$`

func main() {
	policyDir := flag.String("policy-dir", ".", "the policy package's folder (for the comments)")
	out := flag.String("o", "schema.json", "where to write the policy schema")
	values := flag.String("values-schema", "", "a Helm values.schema.json whose properties.policy.properties.document to replace")
	flag.Parse()
	if err := run(*policyDir, *out, *values); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(policyDir, out, values string) error {
	schema, err := generate(policyDir)
	if err != nil {
		return err
	}
	raw, err := marshal(schema)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		return err
	}
	if values == "" {
		return nil
	}
	return embed(values, schema)
}

func generate(policyDir string) (*jsonschema.Schema, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		DoNotReference:             true, // inline, so it can be embedded anywhere
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeOf(time.Duration(0)) {
				return &jsonschema.Schema{Type: "string", Pattern: durationPattern, Description: "A duration such as 30s, 5m or 1h30m."}
			}
			return nil
		},
	}
	abs, err := filepath.Abs(policyDir)
	if err != nil {
		return nil, err
	}
	// AddGoComments takes the package path and a folder relative to the process.
	if err := r.AddGoComments("github.com/betterauth-extauthz/extauthz/internal/policy", relTo(abs)); err != nil {
		return nil, fmt.Errorf("reading comments: %w", err)
	}
	s := r.Reflect(&policy.Config{})
	s.ID = ""
	s.Title = "extauthz policy"
	return s, nil
}

func relTo(abs string) string {
	wd, err := os.Getwd()
	if err != nil {
		return abs
	}
	rel, err := filepath.Rel(wd, abs)
	if err != nil {
		return abs
	}
	return rel
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// embed puts the policy schema under properties.policy.properties.document of a
// values schema, keeping the rest of the file as it is. An empty document is
// allowed there (betterAuth.url alone stands for a policy), so the top-level
// required list is dropped; the chart checks for issuers itself.
func embed(path string, schema *jsonschema.Schema) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc orderedObject
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	inner, err := marshal(schema)
	if err != nil {
		return err
	}
	var sub orderedObject
	if err := json.Unmarshal(inner, &sub); err != nil {
		return err
	}
	sub.delete("$schema")
	sub.delete("required")
	sub.set("description", json.RawMessage(`"The policy document (see the README's policy reference); generated from the Go types."`))
	subRaw, err := sub.MarshalJSON()
	if err != nil {
		return err
	}
	if err := doc.setPath([]string{"properties", "policy", "properties", "document"}, subRaw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	top, err := doc.MarshalJSON()
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, top, "", "  "); err != nil {
		return err
	}
	pretty.WriteByte('\n')
	return os.WriteFile(path, pretty.Bytes(), 0o644)
}
