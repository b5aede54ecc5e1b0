package policy

import (
	"strings"
	"testing"
)

// TestMergeFragmentsDropsOnlyTheConflicting: when the accepted fragments do not
// compile together, they are added one at a time and only the one that breaks
// the merge is rejected, not all of them.
func TestMergeFragmentsDropsOnlyTheConflicting(t *testing.T) {
	bc, err := Parse([]byte("issuers: [{betterAuthURL: https://auth.example.com}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	part := func(id, host string) *accepted {
		// Two parts bringing one rule name: what no single fragment's check can see.
		return &accepted{id: id, frag: &FragmentConfig{Hosts: []string{host}, Rules: []RuleConfig{{Name: "same", Hosts: []string{host}, Paths: []string{"/x"}}}}}
	}
	parts := []*accepted{part("a/p", "a.example.com"), part("b/p", "b.example.com"), {id: "c/p", frag: &FragmentConfig{Rules: []RuleConfig{{Name: "c/p/r", Paths: []string{"/c"}}}}}}
	statuses := []FragmentStatus{{ID: "a/p", Applied: true}, {ID: "b/p", Applied: true}, {ID: "c/p", Applied: true}}
	p, kept, err := mergeFragments(bc, parts, statuses)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 2 || kept[0].id != "a/p" || kept[1].id != "c/p" || len(p.Rules) != 2 {
		t.Fatalf("kept %d parts, %d rules", len(kept), len(p.Rules))
	}
	if !statuses[0].Applied || statuses[1].Applied || !strings.Contains(statuses[1].Error, "conflicts with the fragments before it") || !statuses[2].Applied {
		t.Fatalf("statuses %+v", statuses)
	}
}
