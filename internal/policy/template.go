package policy

import (
	"fmt"
	"strings"
)

type segKind uint8

const (
	segLiteral segKind = iota
	segParam           // {name}: exactly one non-empty segment, bound
	segStar            // *: exactly one non-empty segment
	segRest            // **: everything that is left, possibly nothing
)

type segment struct {
	kind segKind
	text string // literal text or parameter name
}

// Template is a compiled path template such as /api/{user_id}/tasks/**.
type Template struct {
	raw    string
	segs   []segment
	params []string
	// caseSensitive literals compare byte for byte; by default they compare
	// ASCII-case-insensitively, because Express and ASP.NET Core route /API/x like
	// /api/x, and a rule that missed /API/x would let the request fall through.
	caseSensitive bool
	// formatSuffix lets the literal that ends a request also match "literal.ext"
	// (see Match).
	formatSuffix bool
}

// Param is one bound template parameter. Value is fully %-decoded, as a backend's
// handler would receive it.
type Param struct {
	Name, Value string
}

// Params are the parameters one match bound, in template order.
type Params []Param

// Get returns the value bound to name.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// ParseTemplate compiles a path template. Literal segments must already be in
// canonical form, since they are compared with canonical paths: byte for byte when
// caseSensitive, else ignoring ASCII case. "/" matches only the root; a template
// may not end in "/" (a trailing slash on the request is matched anyway) or hold
// an empty segment (requests with one are refused before matching).
func ParseTemplate(raw string, caseSensitive bool) (*Template, error) {
	if raw == "" || raw[0] != '/' {
		return nil, fmt.Errorf("template %q must start with /", raw)
	}
	t := &Template{raw: raw, caseSensitive: caseSensitive}
	if raw == "/" {
		return t, nil
	}
	if strings.HasSuffix(raw, "/") {
		return nil, fmt.Errorf("template %q ends with /: write %q, which also matches the trailing slash", raw, strings.TrimRight(raw, "/"))
	}
	parts := strings.Split(raw[1:], "/")
	for i, p := range parts {
		switch {
		case p == "":
			return nil, fmt.Errorf("template %q has an empty segment (//)", raw)
		case p == "**":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("template %q: ** must be the last segment", raw)
			}
			t.segs = append(t.segs, segment{kind: segRest})
		case p == "*":
			t.segs = append(t.segs, segment{kind: segStar})
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			if !isIdent(name) {
				return nil, fmt.Errorf("template %q: parameter name %q must be letters, digits and _", raw, name)
			}
			for _, seen := range t.params {
				if seen == name {
					return nil, fmt.Errorf("template %q: parameter {%s} appears twice", raw, name)
				}
			}
			t.params = append(t.params, name)
			t.segs = append(t.segs, segment{kind: segParam, text: name})
		default:
			if strings.ContainsAny(p, "{}*") {
				return nil, fmt.Errorf("template %q: segment %q mixes text with {, } or *; use a whole segment", raw, p)
			}
			c, err := canonicalSegment(p)
			if err != nil {
				return nil, fmt.Errorf("template %q: segment %q: %w", raw, p, err)
			}
			if c != p {
				return nil, fmt.Errorf("template %q: segment %q is not canonical (write %q)", raw, p, c)
			}
			if !caseSensitive && hasHighEscape(p) {
				// ASP.NET and Spring fold é and É when they ignore case; we fold ASCII
				// only, so such a literal could be sidestepped by its other case.
				return nil, fmt.Errorf("template %q: segment %q has non-ASCII letters, which are compared ignoring case only with caseSensitive: true", raw, p)
			}
			t.segs = append(t.segs, segment{kind: segLiteral, text: p})
		}
	}
	return t, nil
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// Binds reports whether the template binds the named parameter.
func (t *Template) Binds(name string) bool {
	for _, p := range t.params {
		if p == name {
			return true
		}
	}
	return false
}

// Match reports whether segs (a canonical Path's Segments, none of them empty)
// match the template, appending bound parameters to ps.
func (t *Template) Match(segs []string, ps Params) (Params, bool) {
	start := len(ps)
	for i, s := range t.segs {
		if s.kind == segRest {
			return ps, true
		}
		if i >= len(segs) {
			return ps[:start], false
		}
		v := segs[i]
		switch s.kind {
		case segLiteral:
			if !t.literalMatches(v, s.text) && !(t.formatSuffix && t.isFormatOf(i, segs, v, s.text)) {
				return ps[:start], false
			}
		case segStar, segParam:
			// Canonical paths have no empty segment; the check keeps Match safe for
			// any caller.
			if v == "" {
				return ps[:start], false
			}
			if s.kind == segParam {
				ps = append(ps, Param{Name: s.text, Value: DecodeParam(v)})
			}
		}
	}
	if len(segs) != len(t.segs) {
		return ps[:start], false
	}
	return ps, true
}

func (t *Template) literalMatches(v, lit string) bool {
	return v == lit || !t.caseSensitive && asciiEqualFold(v, lit)
}

// isFormatOf reports whether v, the request's last segment, is lit plus a format
// extension (".json", ".xml") and nothing but ** follows lit in the template.
// Rails adds an optional (.:format) to every route, so /admin.json runs the action
// of /admin; a rule for /admin that missed it would let it fall through.
func (t *Template) isFormatOf(i int, segs []string, v, lit string) bool {
	if i != len(segs)-1 || !(i == len(t.segs)-1 || i == len(t.segs)-2 && t.segs[i+1].kind == segRest) {
		return false
	}
	base, ext, ok := strings.Cut(v, ".")
	if !ok || len(base) != len(lit) {
		// A literal with a dot of its own ("jwks.json") is matched exactly only.
		return false
	}
	return ext != "" && !strings.Contains(ext, ".") && t.literalMatches(base, lit)
}

// asciiEqualFold compares ignoring ASCII case only. strings.EqualFold would also fold
// Unicode (the Kelvin sign K matches k); canonical paths are ASCII (other characters
// stay %-escaped), and case-insensitive templates may not hold non-ASCII letters.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// hasHighEscape reports an escape of a byte >= 0x80 (part of a UTF-8 character).
func hasHighEscape(seg string) bool {
	for i := 0; i+2 < len(seg); i++ {
		if seg[i] == '%' && seg[i+1] >= '8' {
			return true
		}
	}
	return false
}
