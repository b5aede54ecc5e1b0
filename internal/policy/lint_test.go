package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCheckQuery(t *testing.T) {
	for _, q := range []string{
		"/n?_method=DELETE", "/n?a=1&_METHOD=PUT", "/n?%5Fmethod=x", "/n?%5F%6Dethod=x", "/n?_method[]=x",
		"/n?.method=x", "/n?+_method=x", "/n?%20_method=x", "/n?a;_method=x", "/n?_method",
		// PHP keeps an invalid escape and ends the key at a NUL: these are $_GET["_method"].
		"/n?%5Fmethod%00%=DELETE", "/n?%5Fmethod%00%zz=DELETE", "/n?a=1&%5fmethod%00%4=PUT", "/n?%2Emethod%00%=x",
	} {
		if err := CheckQuery(q); !errors.Is(err, ErrMethodParam) {
			t.Errorf("CheckQuery(%q) = %v, want ErrMethodParam", q, err)
		}
	}
	for _, q := range []string{"/n", "/n?", "/n?method=x", "/n?payment_method=card", "/n?a[_method]=x", "/n?__method=x", "/n?%zz=1", "/n?x=_method"} {
		if err := CheckQuery(q); err != nil {
			t.Errorf("CheckQuery(%q) = %v, want nil", q, err)
		}
	}
}

func TestHeaderSpellings(t *testing.T) {
	p := mustLoad(t, "issuers: [{betterAuthURL: https://a.example}]\nidentity: {headers: {x-user-id: sub}}\n")
	got := strings.Join(p.HeaderSpellings, ",")
	for _, want := range []string{"x_user-id", "x-user_id", "x_user_id", "x_http_method_override", "x-http_method", "x_method_override"} {
		if !slices.Contains(p.HeaderSpellings, want) {
			t.Errorf("spellings %s lack %s", got, want)
		}
	}
	for _, name := range []string{"x-user-id", "x-http-method-override"} {
		if slices.Contains(p.HeaderSpellings, name) {
			t.Errorf("spellings %s include the name itself, %s", got, name)
		}
	}
	if n := len(p.HeaderSpellings); n != 3+7+3+3+3 { // x-user-id, the three override headers, x-auth-method
		t.Errorf("%d spellings: %s", n, got)
	}
}

func TestLint(t *testing.T) {
	const pre = "issuers: [{betterAuthURL: https://a.example}]\n"
	owner := "  - {name: own-tasks, methods: [GET], paths: ['/api/{user_id}/tasks/**'], owner: {param: user_id, claim: uuid}}\n"
	cases := []struct {
		name, doc string
		want      []string // substrings, one per warning
	}{
		{"clean", pre + "rules:\n" + owner + "  - {name: admin, paths: ['/admin/**'], when: 'claims.role == \"admin\"'}\n", nil},
		{"default authenticated", pre + "default: authenticated\nrules:\n" + owner, []string{`rule "own-tasks" checks ownership, but default: authenticated`}},
		{"later overlapping rule", pre + "rules:\n" + owner + "  - {name: any-api, paths: ['/api/**']}\n", []string{`later rule "any-api"`}},
		{"later rule, other case", pre + "rules:\n" + owner + "  - {name: shout, paths: ['/API/{x}/TASKS']}\n", []string{`later rule "shout"`}},
		{"later rule, param vs literal", pre + "rules:\n" + owner + "  - {name: mine, paths: ['/api/me/tasks']}\n", []string{`later rule "mine"`}},
		{"later rule, other host", pre + "rules:\n  - {name: own, hosts: [a.example.com], paths: ['/t/{id}'], owner: {param: id, claim: uuid}}\n  - {name: b, hosts: [b.example.com], paths: ['/t/{id}']}\n", nil},
		{"later rule, wildcard host", pre + "rules:\n  - {name: own, hosts: [a.example.com], paths: ['/t/{id}'], owner: {param: id, claim: uuid}}\n  - {name: b, hosts: ['*.example.com'], paths: ['/t/*']}\n", []string{`later rule "b"`}},
		{"later rule, disjoint path", pre + "rules:\n" + owner + "  - {name: other, paths: ['/api/{x}/notes']}\n", nil},
		{"earlier overlapping rule", pre + "rules:\n  - {name: any-api, paths: ['/api/**']}\n" + owner, []string{`earlier rule "any-api"`}},
		{"earlier public rule", pre + "rules:\n  - {name: open, public: true, paths: ['/API/*/tasks/**']}\n" + owner, []string{`earlier rule "open"`}},
		{"earlier rule, other methods", pre + "rules:\n  - {name: writes, methods: [POST], paths: ['/api/**']}\n" + owner, nil},
		{"earlier rule, disjoint path", pre + "rules:\n  - {name: notes, paths: ['/api/{x}/notes']}\n" + owner, nil},
	}
	for _, tc := range cases {
		p, err := Load([]byte(tc.doc))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(p.Warnings) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %d", tc.name, p.Warnings, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(p.Warnings[i], w) {
				t.Errorf("%s: warning %q, want it to contain %q", tc.name, p.Warnings[i], w)
			}
		}
	}
}

func TestSplitRoles(t *testing.T) {
	cases := []struct {
		in   any
		want []string
	}{
		{"admin", []string{"admin"}},
		{"admin,user", []string{"admin", "user"}},
		{" admin , user ,", []string{"admin", "user"}},
		{"", nil},
		{[]any{"a", 1, "b", " "}, []string{"a", "b"}},
		{nil, nil},
		{42.0, nil},
	}
	for _, tc := range cases {
		if got := SplitRoles(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitRoles(%#v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
