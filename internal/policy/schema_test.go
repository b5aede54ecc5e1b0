package policy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

// TestSchemaUpToDate regenerates the schema and the chart's values schema, and
// fails when the checked-in files differ: run `go generate ./internal/policy`.
func TestSchemaUpToDate(t *testing.T) {
	dir := t.TempDir()
	valuesPath := filepath.Join("..", "..", "deploy", "helm", "extauthz", "values.schema.json")
	values, err := os.ReadFile(valuesPath)
	if err != nil {
		t.Fatal(err)
	}
	tmpValues := filepath.Join(dir, "values.schema.json")
	if err := os.WriteFile(tmpValues, values, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "schema.json")
	cmd := exec.Command("go", "run", "./schemagen", "-o", out, "-values-schema", tmpValues)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("schemagen: %v\n%s", err, b)
	}
	for _, f := range []struct{ got, want string }{{out, "schema.json"}, {tmpValues, valuesPath}} {
		got, _ := os.ReadFile(f.got)
		want, _ := os.ReadFile(f.want)
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run go generate ./internal/policy", f.want)
		}
	}
}

func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(policy.Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("policy.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("policy.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validate checks a YAML policy against the schema, as Helm does with values.
func validate(t *testing.T, s *jsonschema.Schema, doc string) error {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	// JSON numbers, as a JSON Schema validator expects.
	b, err := yamlToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

// TestSchemaAgreesWithParse: every policy the tests and examples load is accepted
// by the schema, and the typos and wrong types Parse refuses are refused by it.
func TestSchemaAgreesWithParse(t *testing.T) {
	s := compiledSchema(t)
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".test.yaml") }) // case files
	files = append(files, filepath.Join("..", "..", "deploy", "kustomize", "base", "policy.yaml"))
	var docs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	// The decision tables' policies cover every option.
	tables, _ := filepath.Glob(filepath.Join("..", "engine", "testdata", "decisions", "*.yaml"))
	if len(tables) == 0 {
		t.Fatal("no decision tables found")
	}
	for _, f := range tables {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var table struct {
			Policy string `yaml:"policy"`
		}
		if err := yaml.Unmarshal(b, &table); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, table.Policy)
	}
	docs = append(docs, `
issuers:
  - betterAuthURL: https://auth.example.com
    refreshInterval: 1m30s
    credentials: [jwt, sessionCookie]
    revocation: { secretFile: /s, pollInterval: 500ms, requireSession: false }
rules:
  - { name: r, paths: ["/a/{id}"], owner: { param: id, claim: uuid }, maxTokenAge: 5m, onUnauthenticated: redirect, signInURL: /sign-in }
default: authenticated
leeway: 10s
`)
	for i, d := range docs {
		if _, err := policy.Parse([]byte(d)); err != nil {
			t.Fatalf("doc %d does not parse: %v", i, err)
		}
		if err := validate(t, s, d); err != nil {
			t.Errorf("doc %d: the schema refuses a policy Parse accepts: %v", i, err)
		}
	}
	for name, d := range map[string]string{
		"misspelt top-level key": "isuers: [{betterAuthURL: https://a.example.com}]",
		"misspelt issuer key":    "issuers: [{betterAuthUrl: https://a.example.com}]",
		"misspelt rule key":      "issuers: [{betterAuthURL: https://a.example.com}]\nrules: [{name: r, path: [/a]}]",
		"duration as a number":   "issuers: [{betterAuthURL: https://a.example.com, refreshInterval: 30}]",
		"bad default":            "issuers: [{betterAuthURL: https://a.example.com}]\ndefault: allow",
		"lower-case method":      "issuers: [{betterAuthURL: https://a.example.com}]\nrules: [{name: r, paths: [/a], methods: [get]}]",
		"no issuers":             "rules: []",
		"unknown credential":     "issuers: [{betterAuthURL: https://a.example.com, credentials: [cookie]}]",
	} {
		if err := validate(t, s, d); err == nil {
			t.Errorf("%s: the schema accepts %q", name, d)
		}
	}
}

func yamlToJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
