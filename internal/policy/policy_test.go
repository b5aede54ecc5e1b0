package policy

import (
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

const example = `
issuers:
  - betterAuthURL: https://auth.example.com
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: health
    paths: ["/healthz"]
    public: true
  - name: own-tasks
    methods: [GET, POST, PUT, PATCH, DELETE]
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
  - name: admin
    hosts: ["api.example.com", "*.admin.example.com"]
    paths: ["/admin/**"]
    when: 'claims.role == "admin"'
  - name: by-param
    paths: ["/teams/{team}/*"]
    when: 'params.team in claims.teams && request.method == "GET"'
default: deny
cors: { allowPreflight: true }
`

func mustLoad(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadExample(t *testing.T) {
	p := mustLoad(t, example)
	is := p.Issuers[0]
	if is.Issuer != "https://auth.example.com" || is.Audiences[0] != "https://auth.example.com" ||
		is.JWKSURL != "https://auth.example.com/api/auth/jwks" || len(is.Algorithms) != 5 {
		t.Fatalf("issuer = %+v", is)
	}
	if len(p.Rules) != 4 || !p.AllowPreflight || p.Default != DefaultDeny || len(p.Hash) != 16 {
		t.Fatalf("policy = %+v", p)
	}
	if got := p.Identity; len(got) != 3 || got[0].Name != "x-user-email" || got[2].Claim != "uuid" {
		t.Fatalf("identity = %+v", got)
	}
}

func TestBetterAuthURLDerivation(t *testing.T) {
	cases := map[string][2]string{ // betterAuthURL -> issuer, jwks
		"http://127.0.0.1:3000":             {"http://127.0.0.1:3000", "http://127.0.0.1:3000/api/auth/jwks"},
		"https://app.example.com/":          {"https://app.example.com", "https://app.example.com/api/auth/jwks"},
		"https://app.example.com/api/auth":  {"https://app.example.com", "https://app.example.com/api/auth/jwks"},
		"https://app.example.com/api/auth/": {"https://app.example.com", "https://app.example.com/api/auth/jwks"},
		"https://example.com/app":           {"https://example.com", "https://example.com/app/api/auth/jwks"},
	}
	for in, want := range cases {
		p := mustLoad(t, "issuers: [{betterAuthURL: \""+in+"\"}]")
		if p.Issuers[0].Issuer != want[0] || p.Issuers[0].JWKSURL != want[1] {
			t.Errorf("%s: got %s %s, want %v", in, p.Issuers[0].Issuer, p.Issuers[0].JWKSURL, want)
		}
	}
}

func TestValidationErrorsNameRuleAndField(t *testing.T) {
	iss := "issuers: [{betterAuthURL: https://auth.example.com}]\n"
	cases := []struct{ doc, want string }{
		{"", "empty"},
		{"rules: []", "issuers: at least one"},
		{iss + "rulez: []", "field rulez not found"},
		{iss + "rules: [{name: a, paths: [/x], publik: true}]", "field publik not found"},
		{"issuers: [{betterAuthURL: http://auth.example.com}]", "https is required"},
		{"issuers: [{betterAuthURL: http://auth.example.com, allowInsecureJWKS: true}]", ""},
		{"issuers: [{issuer: https://a, audiences: [x]}]", "jwksURL"},
		{"issuers: [{issuer: https://a}]", "audiences"},
		{"issuers: [{betterAuthURL: https://a, algorithms: [HS256]}]", `"HS256" is not supported`},
		{"issuers: [{betterAuthURL: https://a, algorithms: [none]}]", `"none" is not supported`},
		{"issuers: [{betterAuthURL: https://a}, {betterAuthURL: https://a/}]", "listed twice"},
		{"issuers: [{betterAuthURL: not-a-url}]", "betterAuthURL"},
		{iss + "default: allow", `default: "allow"`},
		{iss + "identity: {headers: {Authorization: sub}}", "identity.headers"},
		{iss + "identity: {headers: {authorization: sub}}", "reserved"},
		{iss + "identity: {headers: {x-envoy-original-path: sub}}", "reserved"},
		{iss + "identity: {headers: {\"x-user\\r\\nx\": sub}}", "identity.headers"},
		{iss + "rules: [{paths: [/x]}]", `rules[0] "": name: required`},
		{iss + "rules: [{name: a, paths: [/x]}, {name: a, paths: [/y]}]", `rules[1] "a": name`},
		{iss + "rules: [{name: a}]", `rules[0] "a": paths`},
		{iss + "rules: [{name: a, paths: [x]}]", "must start with /"},
		{iss + "rules: [{name: a, paths: ['/**/x']}]", "** must be the last"},
		{iss + "rules: [{name: a, paths: ['/{a}/{a}']}]", "appears twice"},
		{iss + "rules: [{name: a, paths: ['/x{a}']}]", "mixes text"},
		{iss + "rules: [{name: a, paths: ['/{a-b}']}]", "parameter name"},
		{iss + "rules: [{name: a, paths: ['/%2e%2e']}]", "segment"},
		{iss + "rules: [{name: a, paths: ['/%7E']}]", "not canonical"},
		{iss + "rules: [{name: a, methods: [get], paths: [/x]}]", `rules[0] "a": methods`},
		{iss + "rules: [{name: a, hosts: ['a/b'], paths: [/x]}]", "hosts"},
		{iss + "rules: [{name: own, paths: ['/api/{id}/t', '/api/t'], owner: {param: id, claim: uuid}}]", `rules[0] "own": owner.param: path "/api/t" does not bind {id}`},
		{iss + "rules: [{name: a, paths: [/x], owner: {param: id}}]", "owner"},
		{iss + "rules: [{name: a, paths: [/x], public: true, when: 'true'}]", "public"},
		{iss + "rules: [{name: a, paths: [/x], when: 'claims.role =='}]", `rules[0] "a": when`},
		{iss + "rules: [{name: a, paths: [/x], when: 'claims.role'}]", "not bool"},
		{iss + "rules: [{name: a, paths: [/x], when: 'nosuchvar == 1'}]", "undeclared"},
		{iss + "leeway: 1h", "leeway"},
		{iss + "---\n" + iss, "more than one document"},
	}
	for _, tc := range cases {
		_, err := Load([]byte(tc.doc))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want it to contain %q", tc.doc, err, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	p := mustLoad(t, example)
	cases := []struct {
		method, host, path string
		rule               string
		params             Params
	}{
		{"GET", "x", "/healthz", "health", nil},
		{"GET", "x", "/healthz/", "health", nil}, // a trailing slash is judged like none
		{"GET", "x", "/HEALTHZ", "health", nil},  // literals ignore ASCII case
		{"GET", "x", "/api/u1/tasks", "own-tasks", Params{{"user_id", "u1"}}},
		{"GET", "x", "/API/U1/Tasks", "own-tasks", Params{{"user_id", "U1"}}}, // params keep their case
		{"GET", "x", "/api/u1/tasks/", "own-tasks", Params{{"user_id", "u1"}}},
		{"DELETE", "x", "/api/u1/tasks/7", "own-tasks", Params{{"user_id", "u1"}}},
		{"GET", "x", "/api/u1/tasks/7/notes/", "own-tasks", Params{{"user_id", "u1"}}},
		{"HEAD", "x", "/api/u1/tasks", "own-tasks", Params{{"user_id", "u1"}}}, // GET includes HEAD
		{"OPTIONS", "x", "/api/u1/tasks", "", nil},                             // method not listed
		{"GET", "x", "/api/u1/task", "", nil},
		{"GET", "api.example.com", "/admin", "admin", nil}, // ** matches nothing too
		{"GET", "api.example.com", "/admin/", "admin", nil},
		{"GET", "API.example.com.:8443", "/admin/users", "admin", nil},
		{"GET", "eu.admin.example.com", "/admin/users", "admin", nil},
		{"GET", "admin.example.com", "/admin/users", "", nil}, // *.x does not match x itself
		{"GET", "evil.com", "/admin/users", "", nil},
		{"GET", "x", "/teams/t1/x", "by-param", Params{{"team", "t1"}}},
		{"GET", "x", "/teams/t1/", "", nil}, // * needs a segment
	}
	for _, tc := range cases {
		path, err := Canonicalize(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		host, err := CanonicalHost(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		r, ps := p.Match(&Request{Method: tc.method, Host: host, Path: path})
		name := ""
		if r != nil {
			name = r.Name
		}
		if name != tc.rule || len(ps) != len(tc.params) {
			t.Errorf("%s %s %s: rule %q params %v, want %q %v", tc.method, tc.host, tc.path, name, ps, tc.rule, tc.params)
			continue
		}
		for i := range ps {
			if ps[i] != tc.params[i] {
				t.Errorf("%s: params %v, want %v", tc.path, ps, tc.params)
			}
		}
	}
}

func TestAuthorize(t *testing.T) {
	p := mustLoad(t, example)
	const id = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	own, admin, team := p.Rules[1], p.Rules[2], p.Rules[3]
	req := func(path, method string) *Request {
		cp, err := Canonicalize(path)
		if err != nil {
			t.Fatal(err)
		}
		return &Request{Method: method, Host: "api.example.com", Path: cp}
	}
	cases := []struct {
		name   string
		rule   *Rule
		claims map[string]any
		params Params
		req    *Request
		want   reason.Code
	}{
		{"owner", own, map[string]any{"uuid": id}, Params{{"user_id", id}}, req("/", "GET"), ""},
		{"owner upper-case uuid in path", own, map[string]any{"uuid": id}, Params{{"user_id", strings.ToUpper(id)}}, req("/", "GET"), ""},
		{"owner upper-case uuid in claim", own, map[string]any{"uuid": strings.ToUpper(id)}, Params{{"user_id", id}}, req("/", "GET"), ""},
		// Only the canonical form compares as a UUID: a backend may not read the others as the same id.
		{"owner uuid in braces", own, map[string]any{"uuid": id}, Params{{"user_id", "{" + id + "}"}}, req("/", "GET"), reason.OwnerMismatch},
		{"owner uuid without dashes", own, map[string]any{"uuid": id}, Params{{"user_id", strings.ReplaceAll(id, "-", "")}}, req("/", "GET"), reason.OwnerMismatch},
		{"owner urn:uuid", own, map[string]any{"uuid": id}, Params{{"user_id", "urn:uuid:" + id}}, req("/", "GET"), reason.OwnerMismatch},
		{"owner uuid with junk around", own, map[string]any{"uuid": id}, Params{{"user_id", "x" + id + "y"}}, req("/", "GET"), reason.OwnerMismatch},
		{"owner uuid with a trailing space", own, map[string]any{"uuid": id}, Params{{"user_id", id + "%20"}}, req("/", "GET"), reason.OwnerMismatch},
		{"claim in braces", own, map[string]any{"uuid": "{" + id + "}"}, Params{{"user_id", id}}, req("/", "GET"), reason.OwnerMismatch},
		{"hyphens moved", own, map[string]any{"uuid": id}, Params{{"user_id", "6639900dc-fe5-59ec-bd5c-e0e68598457e"}}, req("/", "GET"), reason.OwnerMismatch},
		{"other user", own, map[string]any{"uuid": id}, Params{{"user_id", "00000000-0000-0000-0000-000000000002"}}, req("/", "GET"), reason.OwnerMismatch},
		{"non-uuid ids compare exactly", own, map[string]any{"uuid": "abc"}, Params{{"user_id", "ABC"}}, req("/", "GET"), reason.OwnerMismatch},
		{"non-uuid ids equal", own, map[string]any{"uuid": "abc"}, Params{{"user_id", "abc"}}, req("/", "GET"), ""},
		{"no uuid claim", own, map[string]any{"sub": "x"}, Params{{"user_id", id}}, req("/", "GET"), reason.ClaimMissing},
		{"uuid claim not a string", own, map[string]any{"uuid": 7.0}, Params{{"user_id", "7"}}, req("/", "GET"), reason.ClaimMissing},
		{"admin", admin, map[string]any{"role": "admin"}, nil, req("/admin", "GET"), ""},
		{"not admin", admin, map[string]any{"role": "user"}, nil, req("/admin", "GET"), reason.ConditionFalse},
		{"no role claim is a runtime error, denied", admin, map[string]any{}, nil, req("/admin", "GET"), reason.ConditionFalse},
		{"team member", team, map[string]any{"teams": []any{"t1", "t2"}}, Params{{"team", "t1"}}, req("/teams/t1/x", "GET"), ""},
		{"team member, wrong method", team, map[string]any{"teams": []any{"t1"}}, Params{{"team", "t1"}}, req("/teams/t1/x", "POST"), reason.ConditionFalse},
		{"not a member", team, map[string]any{"teams": []any{"t2"}}, Params{{"team", "t1"}}, req("/teams/t1/x", "GET"), reason.ConditionFalse},
		{"teams of the wrong type", team, map[string]any{"teams": "t1"}, Params{{"team", "t1"}}, req("/teams/t1/x", "GET"), reason.ConditionFalse},
	}
	for _, tc := range cases {
		got, _ := tc.rule.Authorize(mapClaims(tc.claims), tc.req, tc.params)
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCELCostLimit(t *testing.T) {
	doc := "issuers: [{betterAuthURL: https://a}]\nrules: [{name: slow, paths: [/x], when: '[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))'}]"
	p := mustLoad(t, doc)
	cp, _ := Canonicalize("/x")
	if got, detail := p.Rules[0].Authorize(mapClaims{}, &Request{Method: "GET", Path: cp}, nil); got != reason.ConditionFalse {
		t.Fatalf("costly condition: %q %s, want condition_false", got, detail)
	}
}

// mapClaims adapts a plain map to Claims.
type mapClaims map[string]any

func (m mapClaims) Get(name string) (any, bool) { v, ok := m[name]; return v, ok }
func (m mapClaims) Map() map[string]any         { return m }
func (m mapClaims) String(name string) (string, bool) {
	s, ok := m[name].(string)
	return s, ok
}

func TestClaimsUsed(t *testing.T) {
	iss := "issuers: [{betterAuthURL: https://a}]\nidentity: {headers: {x-user-id: sub, x-user-email: email}}\n"
	cases := []struct {
		when string
		want []string
		all  bool
	}{
		{"", []string{"email", "sub", "uuid"}, false},
		{`claims.role == "admin"`, []string{"email", "role", "sub", "uuid"}, false},
		{`claims["team"] == params.team && has(claims.plan)`, []string{"email", "plan", "sub", "team", "uuid"}, false},
		{`"admin" in claims && request.method == "GET"`, []string{"admin", "email", "sub", "uuid"}, false},
		{`size(claims) > 3`, nil, true},
		{`claims[params.key] == "x"`, nil, true},
		{`claims.role == "a" || claims.exists(k, k == "x")`, nil, true},
	}
	for _, tc := range cases {
		doc := iss + "rules: [{name: r, paths: ['/t/{id}'], owner: {param: id, claim: uuid}"
		if tc.when != "" {
			doc += ", when: '" + tc.when + "'"
		}
		doc += "}]\n"
		p := mustLoad(t, doc)
		if p.AllClaims != tc.all || (!tc.all && strings.Join(p.ClaimNames, ",") != strings.Join(tc.want, ",")) {
			t.Errorf("when %q: claims %v all %v, want %v all %v", tc.when, p.ClaimNames, p.AllClaims, tc.want, tc.all)
		}
	}
}
