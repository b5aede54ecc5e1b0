package policy

import _ "embed"

// Schema is the JSON Schema of the policy document, generated from Config and its
// comments (go generate), for editors and for the Helm chart's values schema. Parse
// is the authority: the schema cannot express every check Compile makes.
//
//go:embed schema.json
var Schema []byte
