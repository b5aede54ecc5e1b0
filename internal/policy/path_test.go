package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonicalizeAccepts(t *testing.T) {
	ok := []struct{ in, want string }{
		{"/", "/"},
		{"/api/u1/tasks", "/api/u1/tasks"},
		{"/api/u1/tasks?x=1&y=../..", "/api/u1/tasks"},
		{"/api/%75%31/tasks", "/api/u1/tasks"},         // unreserved escapes decoded
		{"/api/%7Eme/%2D%5F%2e%2E1", "/api/~me/-_..1"}, // unreserved incl. dots inside a segment
		{"/a%20b/c", "/a%20b/c"},                       // an escaped space stays escaped
		{"/a%3a/b", "/a:/b"},                           // printable ASCII escapes decoded
		{"/u%40example.com/%21%24%26%27%28%29%2A%2B%2C%3D", "/u@example.com/!$&'()*+,="},
		{"/a%25/b", "/a%25/b"},                               // a literal percent stays escaped
		{"/a%3f%23/b", "/a%3F%23/b"},                         // ? and # stay escaped, in upper-case hex
		{"/caf%c3%a9", "/caf%C3%A9"},                         // UTF-8 escapes stay escaped
		{"/api/u1/tasks/", "/api/u1/tasks/"},                 // trailing slash kept (and judged without)
		{"/api/%75%31/", "/api/u1/"},                         // ...also after decoding
		{"/API/U1/Tasks", "/API/U1/Tasks"},                   // case kept: rules fold it
		{"/.well-known/jwks.json", "/.well-known/jwks.json"}, // dots inside names are fine
		{"/a...b/...", "/a...b/..."},                         // three dots is a name
	}
	for _, tc := range ok {
		p, err := Canonicalize(tc.in)
		if err != nil || p.Canonical != tc.want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", tc.in, p.Canonical, err, tc.want)
		}
		if err == nil && rebuild(p) != p.Canonical {
			t.Errorf("Canonicalize(%q): segments %q do not rebuild %q", tc.in, p.Segments, p.Canonical)
		}
	}

}

func TestCanonicalizeRefuses(t *testing.T) {
	bad := []struct {
		in   string
		want error
	}{
		{"", ErrPathNotAbsolute},
		{"api/tasks", ErrPathNotAbsolute},
		{"http://evil/api", ErrPathNotAbsolute},
		{"*", ErrPathNotAbsolute},
		{"/api/../admin", ErrPathDotSegment},
		{"/api/./tasks", ErrPathDotSegment},
		{"/api/u1/..", ErrPathDotSegment},
		{"/..", ErrPathDotSegment},
		{"/api/%2e%2e/admin", ErrPathDotSegment},
		{"/api/%2E%2E/admin", ErrPathDotSegment},
		{"/api/.%2e/admin", ErrPathDotSegment},
		{"/api/%2e/admin", ErrPathDotSegment},
		{"/api/u1%2F..%2Fu2/tasks", ErrPathEncodedSlash},
		{"/api/u1%2fx/tasks", ErrPathEncodedSlash},
		{"/api/u1%5Cx/tasks", ErrPathEncodedSlash},
		{"/api/u1%5c..%5cu2", ErrPathEncodedSlash},
		{"/api\\..\\admin", ErrPathBackslash},
		{"/api/u1\x00/tasks", ErrPathControl},
		{"/api/u1%00/tasks", ErrPathControl},
		{"/api/u1%0d%0aX-Injected:1", ErrPathControl},
		{"/api/u1\r\n", ErrPathControl},
		{"/api/u1%7f", ErrPathControl},
		{"/api/u1%", ErrPathBadEncoding},
		{"/api/u1%4", ErrPathBadEncoding},
		{"/api/u1%zz/tasks", ErrPathBadEncoding},
		{"/api/u1;jsessionid=x/tasks", ErrPathSemicolon},
		{"/api/..;/admin", ErrPathSemicolon},
		{"/api/u1%3B/tasks", ErrPathSemicolon},
		{"/api/\xc3\xa9", ErrPathNonASCII},
		{"/a b", ErrPathSpace},
		{"/api/%c3", ErrPathBadEncoding},    // an escaped byte that is not UTF-8
		{"/api/%ff%fe", ErrPathBadEncoding}, // ...
		{"/%C5%BFecret", ErrPathCaseFold},   // ſ: ASP.NET upper-cases it to S
		{"/adm%C4%B1n", ErrPathCaseFold},    // ı (dotless i) upper-cases to I
		{"/%C4%B0d", ErrPathCaseFold},       // İ lower-cases to i
		{"/%E2%84%AAey", ErrPathCaseFold},   // the Kelvin sign folds to k
		{"/api/u1#frag", ErrPathFragment},
		{"/" + strings.Repeat("a", MaxPathLength), ErrPathTooLong},
		// nginx merge_slashes and Spring serve these as /api/x/tasks: refuse them.
		{"//api/u1/tasks", ErrPathEmptySegment},
		{"/api//u1/tasks", ErrPathEmptySegment},
		{"/api/u1//tasks", ErrPathEmptySegment},
		{"/api/u1/tasks//", ErrPathEmptySegment},
		{"//", ErrPathEmptySegment},
		{"///", ErrPathEmptySegment},
		{"//?q", ErrPathEmptySegment},
	}
	for _, tc := range bad {
		if _, err := Canonicalize(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("Canonicalize(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{"/api/u1/tasks", "/api/%2e%2e/x", "/a%2F", "/a//b?q", "/%", "/a;b", "/\\", "/a%3a%25%C3%A9", "/%C5%BF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := Canonicalize(raw)
		if err != nil {
			return
		}
		// Whatever we accept is stable, rebuilds from its segments, and can no
		// longer be read by a backend as a different path.
		again, err := Canonicalize(p.Canonical)
		if err != nil || again.Canonical != p.Canonical {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, p.Canonical, again.Canonical, err)
		}
		if rebuild(p) != p.Canonical {
			t.Fatalf("segments %q do not rebuild %q", p.Segments, p.Canonical)
		}
		for _, s := range p.Segments {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\\;?#") {
				t.Fatalf("unsafe segment %q accepted from %q", s, raw)
			}
			lower := strings.ToLower(s)
			if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%2e") {
				t.Fatalf("escape left in %q from %q", s, raw)
			}
			for i := 0; i < len(s); i++ {
				if s[i] <= 0x20 || s[i] >= 0x7f {
					t.Fatalf("control, space or non-ASCII byte in %q from %q", s, raw)
				}
				// Only %, ?, #, space and UTF-8 bytes stay escaped.
				if s[i] == '%' && !(i+2 < len(s) && (s[i+1:i+3] == "25" || s[i+1:i+3] == "3F" || s[i+1:i+3] == "23" || s[i+1:i+3] == "20" || s[i+1] >= '8')) {
					t.Fatalf("escape %q left in %q from %q", s[i:min(i+3, len(s))], s, raw)
				}
			}
		}
	})
}

// rebuild is the path the segments stand for.
func rebuild(p Path) string {
	out := "/" + strings.Join(p.Segments, "/")
	if p.TrailingSlash {
		out += "/"
	}
	return out
}
