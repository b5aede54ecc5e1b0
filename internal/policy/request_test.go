package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonicalHost(t *testing.T) {
	ok := []struct{ in, want string }{
		{"api.example.com", "api.example.com"},
		{"API.Example.COM", "api.example.com"},
		{"api.example.com.", "api.example.com"}, // DNS's root dot: the same backend
		{"api.example.com:8443", "api.example.com"},
		{"api.example.com.:443", "api.example.com"},
		{"127.0.0.1:9001", "127.0.0.1"},
		{"localhost", "localhost"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"my_service.internal", "my_service.internal"},
		{"[::1]", "[::1]"},
		{"[::1]:8080", "[::1]"},
		{"[2001:DB8:0:0::1]:443", "[2001:db8::1]"},
	}
	for _, tc := range ok {
		got, err := CanonicalHost(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []struct {
		in   string
		want error
	}{
		{"", ErrHostEmpty},
		{".", ErrHostEmpty},
		{":8080", ErrHostEmpty},
		{"api.example.com..", ErrHostEmptyLabel},
		{"api..example.com", ErrHostEmptyLabel},
		{".api.example.com", ErrHostEmptyLabel},
		{"a:b:c", ErrHostColons},
		{"::1", ErrHostColons},
		{"api.example.com:", ErrHostPort},
		{"api.example.com:80a", ErrHostPort},
		{"api.example.com:123456", ErrHostPort},
		{"api.example.com:+80", ErrHostPort},
		{"[::1", ErrHostIPv6},
		{"[::1]x", ErrHostPort},
		{"[127.0.0.1]", ErrHostIPv6},
		{"[fe80::1%25eth0]", ErrHostIPv6},
		{"[zz::1]", ErrHostIPv6},
		{"api%2eexample.com", ErrHostCharacter},
		{"bücher.example", ErrHostCharacter},
		{"api.example.com ", ErrHostCharacter},
		{"api example.com", ErrHostCharacter},
		{"api.example.com\x00", ErrHostCharacter},
		{"user@api.example.com", ErrHostCharacter},
		{"api.example.com/x", ErrHostCharacter},
		{strings.Repeat("a", 64) + ".example.com", ErrHostLabel},
		{strings.Repeat("a.", 140), ErrHostTooLong},
	}
	for _, tc := range bad {
		if got, err := CanonicalHost(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckMethod(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "DELETE", "PROPFIND", "M-SEARCH", "BASELINE-CONTROL"} {
		if err := CheckMethod(m); err != nil {
			t.Errorf("CheckMethod(%q) = %v", m, err)
		}
	}
	bad := []struct {
		in   string
		want error
	}{
		{"delete", ErrMethodCase},
		{"Delete", ErrMethodCase},
		{"get", ErrMethodCase},
		{"", ErrMethodInvalid},
		{"GET ", ErrMethodInvalid},
		{"GE T", ErrMethodInvalid},
		{"GET\r\n", ErrMethodInvalid},
		{"GÉT", ErrMethodInvalid},
		{"GET/1", ErrMethodInvalid},
		{strings.Repeat("A", MaxMethodLength+1), ErrMethodInvalid},
	}
	for _, tc := range bad {
		if err := CheckMethod(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("CheckMethod(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func FuzzHostMethod(f *testing.F) {
	for _, s := range []string{"api.example.com", "API.example.com.:443", "[::1]:80", "a:b:c", "GET", "delete", "x..y", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if h, err := CanonicalHost(raw); err == nil {
			// Accepted hosts are stable, lower-case, port- and dot-free, and plain ASCII.
			again, err := CanonicalHost(h)
			if err != nil || again != h {
				t.Fatalf("host not idempotent: %q -> %q -> %q, %v", raw, h, again, err)
			}
			if h != strings.ToLower(h) || strings.HasSuffix(h, ".") || h == "" {
				t.Fatalf("host %q from %q is not canonical", h, raw)
			}
			if !strings.HasPrefix(h, "[") && strings.Contains(h, ":") {
				t.Fatalf("port left in %q from %q", h, raw)
			}
			for i := 0; i < len(h); i++ {
				if c := h[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '/' || c == '@' {
					t.Fatalf("byte %q in accepted host %q", c, h)
				}
			}
			// Every spelling that canonicalises to h is matched by the same rule.
			p := mustLoadHost(t, h)
			if p != nil {
				if r, _ := p.Match(&Request{Method: "GET", Host: h, Path: Path{Canonical: "/"}}); r == nil {
					t.Fatalf("rule for host %q does not match it", h)
				}
			}
		}
		if err := CheckMethod(raw); err == nil {
			for i := 0; i < len(raw); i++ {
				if c := raw[i]; c >= 'a' && c <= 'z' || c <= ' ' || c >= 0x7f {
					t.Fatalf("method %q accepted", raw)
				}
			}
		}
	})
}

// mustLoadHost compiles a policy whose one rule is scoped to host, or returns nil
// when host is not a valid pattern (IPv6 literals and names over DNS limits are fine
// to skip here).
func mustLoadHost(t *testing.T, host string) *Policy {
	p, err := Load([]byte("issuers: [{betterAuthURL: https://a.example}]\nrules: [{name: r, hosts: ['" + host + "'], paths: ['/'], public: true}]\n"))
	if err != nil {
		return nil
	}
	return p
}

func TestTemplates(t *testing.T) {
	p := mustLoad(t, `
issuers: [{betterAuthURL: https://a.example}]
rules:
  - {name: exact, paths: ["/Reports/{id}"], caseSensitive: true, public: true}
  - {name: root, paths: ["/"], public: true}
  - {name: files, paths: ["/files/**"], public: true}
  - {name: colon, paths: ["/v1/a:b"], public: true}
  - {name: admin, paths: ["/admin/**"], when: 'claims.role == "admin"'}
  - {name: report, paths: ["/reports/{id}/pdf"], when: 'claims.role == "admin"'}
  - {name: open, paths: ["/status"], public: true}
  - {name: cafe, paths: ["/caf%C3%A9"], caseSensitive: true, public: true}
`)
	cases := []struct{ path, rule string }{
		{"/Reports/1", "exact"},
		{"/reports/1", ""}, // caseSensitive opts out of folding
		{"/Reports/1/", "exact"},
		{"/", "root"},
		{"/files", "files"},
		{"/files/", "files"},
		{"/files/a/b/", "files"},
		{"/FILES/a", "files"},
		{"/filesx", ""},
		{"/v1/a:b", "colon"},
		{"/v1/a%3Ab", "colon"}, // backends decode %3A before routing
		{"/v1/a%3ab", "colon"},
		// Rails routes /admin.json to /admin's action (its optional .:format).
		{"/admin.json", "admin"},
		{"/ADMIN.xml", "admin"},
		{"/admin.json/x", ""}, // the extension only ends a path
		{"/admin.tar.gz", ""}, // Rails' format has no dot
		{"/reports/1/pdf.json", "report"},
		{"/status.json", ""}, // public rules never widen to a suffix
		{"/caf%C3%A9", "cafe"},
		{"/caf%C3%89", ""}, // case-sensitive, as required for non-ASCII
	}
	for _, tc := range cases {
		cp, err := Canonicalize(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := p.Match(&Request{Method: "GET", Host: "x", Path: cp})
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.rule {
			t.Errorf("%s: rule %q, want %q", tc.path, got, tc.rule)
		}
	}
}

// TestConditionSeesCanonicalRequest: CEL judges the path as the templates do (no
// trailing slash, case folded unless the rule is case-sensitive) and parameters
// as the backend's handler receives them (fully decoded).
func TestConditionSeesCanonicalRequest(t *testing.T) {
	p := mustLoad(t, `
issuers: [{betterAuthURL: https://a.example}]
rules:
  - {name: folded, paths: ["/f/**"], when: 'request.path == "/f/admin/x" || request.path == "/f/q%3F"'}
  - {name: exact, paths: ["/e/**"], caseSensitive: true, when: 'request.path == "/e/Admin"'}
  - {name: param, paths: ["/p/{who}"], when: 'params.who == claims.email'}
  - {name: owner, paths: ["/o/{who}"], owner: {param: who, claim: email}}
`)
	claims := mapClaims{"email": "a b@example.com"}
	cases := []struct {
		path string
		ok   bool
	}{
		{"/f/admin/x", true},
		{"/F/ADMIN/x/", true},
		{"/f/%61dmin/x", true},
		{"/f/admin/y", false},
		{"/F/Q%3F", true}, // escapes keep their canonical upper-case hex
		{"/e/Admin", true},
		{"/e/Admin/", true},
		{"/e/admin", false},
		{"/p/a%20b@example.com", true},
		{"/p/a%20b%40example.com", true},
		{"/p/a+b@example.com", false},
		{"/f/admin/x.json", false}, // the rule matched by its format suffix, but the path is not "/f/admin/x"
		{"/o/a%20b@example.com", true},
		{"/o/a%20b%40example.com", true},
		{"/o/A%20b@example.com", false},
	}
	for _, tc := range cases {
		cp, err := Canonicalize(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		req := &Request{Method: "GET", Host: "x", Path: cp}
		r, ps := p.Match(req)
		if r == nil {
			t.Fatalf("%s: no rule", tc.path)
		}
		code, detail := r.Authorize(claims, req, ps)
		if (code == "") != tc.ok {
			t.Errorf("%s: rule %s: %q %s, want allow=%v", tc.path, r.Name, code, detail, tc.ok)
		}
	}
}

func TestRuleValidation(t *testing.T) {
	const pre = "issuers: [{betterAuthURL: https://a.example}]\nrules: [{name: r, public: true, "
	cases := []struct{ rule, want string }{
		{`paths: ["/a/"]`, "ends with /"},
		{`paths: ["/a//b"]`, "empty segment"},
		{`paths: ["//a"]`, "empty segment"},
		{`paths: ["/a"], hosts: ["api.example.com:443"]`, "has a port"},
		{`paths: ["/a"], hosts: ["api.example.com."]`, "ends with a dot"},
		{`paths: ["/a"], hosts: ["api..example.com"]`, "empty label"},
		{`paths: ["/a"], hosts: ["*.example.com:80"]`, "has a port"},
		{`paths: ["/a"], hosts: ["a b.example.com"]`, "character"},
		{`paths: ["/a"], hosts: ["xn--a.example\u00a0"]`, "international"},
		{`paths: ["/a"], hosts: ["foo.*.com"]`, "not a host name"},
		{`paths: ["/a"], hosts: ["*"]`, "not a host name"},
		{`paths: ["/a"], methods: [get]`, "upper-case"},
		{`paths: ["/a%3Ab"]`, "not canonical"},
		{`paths: ["/a%C5%BF"]`, "case-folds"},
		{`paths: ["/caf%C3%A9/admin"]`, "non-ASCII letters"}, // é vs É: ASP.NET folds them, we would not
	}
	for _, tc := range cases {
		_, err := Load([]byte(pre + tc.rule + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.rule, err, tc.want)
		}
	}
	// International names become punycode, as browsers send them.
	p := mustLoad(t, pre+`paths: ["/a"], hosts: ["Bücher.example", "*.bücher.example"]}]`+"\n")
	if got := p.Rules[0].hosts; got[0] != "xn--bcher-kva.example" || got[1] != "*.xn--bcher-kva.example" {
		t.Fatalf("hosts = %q", got)
	}
	if m := mustLoad(t, pre+`paths: ["/a"], methods: [GET]}]`+"\n").Rules[0].Methods(); strings.Join(m, ",") != "GET,HEAD" {
		t.Fatalf("methods = %q, want GET,HEAD", m)
	}
}

func TestIdentityHeaderNamesReserved(t *testing.T) {
	for _, name := range []string{
		"authorization", "cookie", "host", "x-envoy-original-path", "forwarded", "x-forwarded-for",
		"x-forwarded-host", "x-real-ip", "x-original-uri", "x-original-method", "x-request-id",
		"x-http-method-override", "x-http-method", "x-method-override", "x_user_id", "X-User-Id",
		"x-a-b-c-d-e-f", // six hyphens: 63 spellings to remove
	} {
		_, err := Load([]byte("issuers: [{betterAuthURL: https://a.example}]\nidentity: {headers: {" + name + ": sub}}\n"))
		if err == nil {
			t.Errorf("identity header %q accepted", name)
		}
	}
}

// TestSignInRedirectValidation: the sign-in URL is fixed by the policy, so no
// request can turn it into an open redirect.
func TestSignInRedirectValidation(t *testing.T) {
	const pre = "issuers: [{betterAuthURL: https://a.example}]\nrules: [{name: r, paths: [/a], "
	for rule, want := range map[string]string{
		`onUnauthenticated: redirect, signInURL: "//evil.example/login"`:                    "signInURL",
		`onUnauthenticated: redirect, signInURL: "javascript:alert(1)"`:                     "signInURL",
		`onUnauthenticated: redirect, signInURL: "/login?callbackURL=https://evil.example"`: "signInURL",
		`onUnauthenticated: redirect`:                                                       "signInURL",
		`signInURL: "/login"`:                                                               "onUnauthenticated",
		`onUnauthenticated: login, signInURL: "/login"`:                                     "not redirect",
	} {
		_, err := Load([]byte(pre + rule + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", rule, err, want)
		}
	}
	for _, ok := range []string{`"/sign-in"`, `"https://app.example.com/sign-in?from=api"`} {
		if _, err := Load([]byte(pre + "onUnauthenticated: redirect, signInURL: " + ok + "}]\n")); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
