package policy

import (
	"errors"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPathLength bounds the request path we are willing to canonicalise.
const MaxPathLength = 8 << 10

// Path is a request path in canonical form: query stripped, every %-escape of a
// printable ASCII character decoded except %25 (%), %3F (?), %23 (#) and %20
// (space), which stay escaped with upper-case hex, as do UTF-8 escapes.
type Path struct {
	// Canonical is the whole path, starting with '/', trailing slash kept.
	Canonical string
	// Segments are the parts between slashes, never empty: "/" has none, and a
	// trailing slash adds none (it is recorded in TrailingSlash instead).
	Segments []string
	// TrailingSlash is true for "/a/b/". Rules judge "/a/b/" like "/a/b", because
	// Express, Spring and many routers serve both from one handler.
	TrailingSlash bool
}

// Errors from Canonicalize; all mean "deny with path_rejected".
var (
	ErrPathNotAbsolute  = errors.New("path does not start with /")
	ErrPathTooLong      = errors.New("path too long")
	ErrPathDotSegment   = errors.New("path has a . or .. segment")
	ErrPathEncodedSlash = errors.New("path has an encoded slash or backslash")
	ErrPathBackslash    = errors.New("path has a backslash")
	ErrPathControl      = errors.New("path has a control character")
	ErrPathNonASCII     = errors.New("path has a raw non-ASCII byte")
	ErrPathBadEncoding  = errors.New("path has invalid %-encoding")
	ErrPathSemicolon    = errors.New("path has ; in a segment")
	ErrPathFragment     = errors.New("path has a fragment")
	ErrPathEmptySegment = errors.New("path has an empty segment (//)")
	ErrPathSpace        = errors.New("path has a raw space")
	ErrPathCaseFold     = errors.New("path has an escaped character that case-folds to ASCII")
)

// Canonicalize turns a request path (as a proxy forwards it, possibly with a query
// string) into the form that rules match against, or refuses it.
//
// Refusing rather than normalising is deliberate: a path that a backend might
// resolve differently from us (dot segments, empty segments, encoded slashes,
// backslashes, path parameters, invalid escapes) is the classic way around
// path-based rules (CVE-2019-9901). nginx (merge_slashes) and Spring serve "//a" as
// "/a", so an empty segment would let a request skip the rule that "/a" gets. No
// legitimate browser request needs any of these.
func Canonicalize(raw string) (Path, error) { return CanonicalizeTo(raw, nil) }

// CanonicalizeTo is Canonicalize keeping the segments in segs' storage (segs[:0]),
// so that a caller with a buffer on its stack canonicalises without allocating.
func CanonicalizeTo(raw string, segs []string) (Path, error) {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if len(raw) > MaxPathLength {
		return Path{}, ErrPathTooLong
	}
	if raw == "" || raw[0] != '/' {
		return Path{}, ErrPathNotAbsolute
	}
	if raw == "/" {
		return Path{Canonical: "/"}, nil
	}
	rest := raw[1:]
	trailing := strings.HasSuffix(rest, "/")
	if trailing {
		rest = rest[:len(rest)-1]
	}
	if segs == nil {
		segs = make([]string, 0, strings.Count(rest, "/")+1)
	}
	segs = segs[:0]
	changed := false
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" {
			return Path{}, ErrPathEmptySegment
		}
		c, err := canonicalSegment(seg)
		if err != nil {
			return Path{}, err
		}
		if c != seg {
			changed = true
		}
		segs = append(segs, c)
		if !more {
			break
		}
		rest = tail
	}
	canonical := raw
	if changed {
		canonical = "/" + strings.Join(segs, "/")
		if trailing {
			canonical += "/"
		}
	}
	return Path{Canonical: canonical, Segments: segs, TrailingSlash: trailing}, nil
}

func canonicalSegment(seg string) (string, error) {
	escaped := false
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case c == '%':
			escaped = true
		case c < 0x20 || c == 0x7f:
			return "", ErrPathControl
		case c == ' ':
			return "", ErrPathSpace
		case c >= 0x80:
			return "", ErrPathNonASCII
		case c == '\\':
			return "", ErrPathBackslash
		case c == ';':
			return "", ErrPathSemicolon
		case c == '#':
			return "", ErrPathFragment
		}
	}
	if !escaped {
		if seg == "." || seg == ".." {
			return "", ErrPathDotSegment
		}
		return seg, nil
	}
	var b strings.Builder
	b.Grow(len(seg))
	high := false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
			return "", ErrPathBadEncoding
		}
		v := unhex(seg[i+1])<<4 | unhex(seg[i+2])
		i += 2
		switch {
		case v == '/' || v == '\\':
			return "", ErrPathEncodedSlash
		case v < 0x20 || v == 0x7f:
			return "", ErrPathControl
		case v == ';':
			return "", ErrPathSemicolon
		case v < 0x80 && !keptEscaped(v):
			// Backends decode "%3A" to ":" before routing, so we judge the decoded
			// character; a literal "a:b" in a rule then matches both spellings.
			b.WriteByte(v)
		default:
			high = high || v >= 0x80
			const hexdigits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexdigits[v>>4])
			b.WriteByte(hexdigits[v&15])
		}
	}
	out := b.String()
	if out == "." || out == ".." {
		return "", ErrPathDotSegment
	}
	if high {
		if err := checkEscapedRunes(out); err != nil {
			return "", err
		}
	}
	return out, nil
}

// keptEscaped are the ASCII characters that stay %-escaped in canonical form:
// decoding them would change how the path splits (query, fragment) or make the
// escape ambiguous (%), and a raw space is not a valid request path.
func keptEscaped(c byte) bool { return c == '%' || c == '?' || c == '#' || c == ' ' }

// checkEscapedRunes refuses escaped bytes that are not UTF-8, and escaped letters
// that fold to ASCII under Unicode case rules (the long s U+017F, dotless i U+0131,
// dotted I U+0130, the Kelvin sign U+212A): ASP.NET's OrdinalIgnoreCase and
// Unicode-aware case-insensitive routers match "/%C5%BFecret" like "/secret", which
// our ASCII-only folding would not.
func checkEscapedRunes(seg string) error {
	decoded, err := url.PathUnescape(seg)
	if err != nil || !utf8.ValidString(decoded) {
		return ErrPathBadEncoding
	}
	for _, r := range decoded {
		if r >= utf8.RuneSelf && foldsToASCII(r) {
			return ErrPathCaseFold
		}
	}
	return nil
}

func foldsToASCII(r rune) bool {
	if unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToLower(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	return false
}

// DecodeParam returns a canonical segment with its remaining escapes decoded: the
// value a backend hands its handler, which owner checks and CEL compare.
func DecodeParam(seg string) string {
	if !strings.Contains(seg, "%") {
		return seg
	}
	v, err := url.PathUnescape(seg)
	if err != nil {
		// Canonical segments always decode; keep the bytes rather than guess.
		return seg
	}
	return v
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
