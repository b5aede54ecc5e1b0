package reload

import (
	"context"
)

// Update is one version of a policy document, or the reason a source could not
// read one.
type Update struct {
	// Source labels metrics and logs: "file:/etc/extauthz/policy.yaml",
	// "configmap:ns/name", "env:BETTER_AUTH_URL".
	Source string
	Doc    []byte
	// Err, when set, says the source could not produce a document (an unreadable
	// file, a ConfigMap without the key). It is rejected like a bad document.
	Err error
}

// Outcome is what became of one Update.
type Outcome struct {
	Result Result
	// Hash identifies the policy in force after the update ("" before the first).
	Hash string
	// Warnings are the lint warnings of a newly applied policy.
	Warnings []string
	// Err explains a rejection.
	Err error
}

// Result says what Apply did.
type Result int

// Apply results.
const (
	Applied   Result = iota // a new policy is in force
	Unchanged               // the same document is already in force
	Rejected                // the document was refused; the old policy stays
)

// ApplyFunc hands an Update to the Reloader and reports what became of it.
type ApplyFunc func(context.Context, Update) Outcome

// Source produces policy documents: a file, a ConfigMap, a fixed document.
//
// Run sends the current document to apply, then every later version, until ctx
// ends; it then returns nil. It returns an error only when it cannot go on (a
// watch that cannot be set up, a fixed document that was refused); the server
// then exits with that error, so that a misconfigured source shows as a failing
// Pod rather than one that is silently never ready. A document that is refused
// is not such an error: the source keeps watching for a better one.
type Source interface {
	Run(ctx context.Context, apply ApplyFunc) error
}

// Static is a Source with one fixed document, e.g. the policy BETTER_AUTH_URL
// alone stands for.
type Static struct {
	// Name labels metrics and logs (Update.Source).
	Name string
	Doc  []byte
}

// Run applies the document once and waits for ctx. A fixed document that is
// refused can never be fixed, so that is an error (unless ctx ended meanwhile:
// a shutdown during the first key wait is not the document's fault).
func (s Static) Run(ctx context.Context, apply ApplyFunc) error {
	if out := apply(ctx, Update{Source: s.Name, Doc: s.Doc}); out.Result == Rejected && ctx.Err() == nil {
		return out.Err
	}
	<-ctx.Done()
	return nil
}
