package token

import (
	"strconv"
	"unicode/utf8"
)

// maxFlatMembers bounds the members decodeFlat takes on; Better Auth's claim sets
// have about a dozen.
const maxFlatMembers = 32

// decodeFlat decodes, by hand, the one shape every Better Auth JOSE header and
// claim set has: an object whose members are strings, numbers, true, false or
// null, or arrays of those (aud). It returns ok false for anything else, or for
// anything it would have to judge finely: a nested object, an escape or a byte
// that is not UTF-8 in a string, a control character, a duplicate name, a number
// out of range, more than maxFlatMembers members, text after the object. The caller
// then decodes with encoding/json, which refuses or reads those exactly as before.
//
// When ok is true the map is exactly what json.Unmarshal builds for data (float64
// numbers, []any arrays, the same strings), and data nests two levels at most and
// has no duplicate or escaped name, so the strict decoding (its depth scan
// included) would have accepted it: a fuzz test holds the two to that. It exists
// because encoding/json's reflection costs a new token about 40 allocations and
// several microseconds for these few scalars.
func decodeFlat(data []byte) (map[string]any, bool) {
	type member struct {
		name  string // a slice of s
		value any
	}
	var buf [16]member // a Better Auth claim set fits; up to maxFlatMembers spill to the heap
	members := buf[:0]
	// One copy of the text, every string in it a slice of that copy rather than an
	// allocation of its own; newClaimSet copies what a cached token keeps out of it.
	s := string(data)
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return nil, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		i++
	} else {
		for {
			if i == len(s) || s[i] != '"' || len(members) == maxFlatMembers {
				return nil, false
			}
			end, ok := plainString(s, i)
			if !ok {
				return nil, false
			}
			// Comparing raw text is comparing names only because plainString
			// refuses escapes and bytes that are not UTF-8.
			name := s[i+1 : end]
			for _, m := range members {
				if m.name == name {
					return nil, false
				}
			}
			i = skipSpace(s, end+1)
			if i == len(s) || s[i] != ':' {
				return nil, false
			}
			var v any
			if v, i, ok = flatValue(s, skipSpace(s, i+1), false); !ok {
				return nil, false
			}
			members = append(members, member{name, v})
			i = skipSpace(s, i)
			if i == len(s) {
				return nil, false
			}
			if s[i] == '}' {
				i++
				break
			}
			if s[i] != ',' {
				return nil, false
			}
			i = skipSpace(s, i+1)
		}
	}
	if skipSpace(s, i) != len(s) {
		return nil, false
	}
	m := make(map[string]any, len(members))
	for _, mb := range members {
		m[intern(mb.name)] = mb.value
	}
	return m, true
}

// flatValue decodes the scalar at s[i], or an array of scalars unless inArray
// (so nothing nests deeper than a member's array), and returns it with the index
// after it.
func flatValue(s string, i int, inArray bool) (any, int, bool) {
	if i == len(s) {
		return nil, 0, false
	}
	switch c := s[i]; {
	case c == '"':
		end, ok := plainString(s, i)
		if !ok {
			return nil, 0, false
		}
		return s[i+1 : end], end + 1, true
	case c == '-' || c >= '0' && c <= '9':
		end := numberEnd(s, i)
		if end < 0 {
			return nil, 0, false
		}
		f, err := strconv.ParseFloat(s[i:end], 64)
		if err != nil {
			return nil, 0, false // out of range: encoding/json's error
		}
		return f, end, true
	case c == 't':
		return literal(s, i, "true", true)
	case c == 'f':
		return literal(s, i, "false", false)
	case c == 'n':
		return literal(s, i, "null", nil)
	case c == '[' && !inArray:
		a := []any{}
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return a, i + 1, true
		}
		for {
			v, next, ok := flatValue(s, i, true)
			if !ok {
				return nil, 0, false
			}
			a = append(a, v)
			i = skipSpace(s, next)
			if i == len(s) {
				return nil, 0, false
			}
			if s[i] == ']' {
				return a, i + 1, true
			}
			if s[i] != ',' {
				return nil, 0, false
			}
			i = skipSpace(s, i+1)
		}
	}
	return nil, 0, false
}

// plainString returns the index of the quote closing the string that opens at
// s[open], if the string has no escape, no control character and is UTF-8:
// then its bytes are its value.
func plainString(s string, open int) (int, bool) {
	ascii := true
	for i := open + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i, ascii || utf8.ValidString(s[open+1:i])
		case c == '\\' || c < 0x20:
			return 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, false
}

// numberEnd returns the index after the JSON number at s[i] (RFC 8259 §6), or
// -1; i < len(s).
func numberEnd(s string, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i == len(s):
		return -1
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		i = digitsEnd(s, i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		if j := digitsEnd(s, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if j := digitsEnd(s, i); j > i {
			i = j
		} else {
			return -1
		}
	}
	return i
}

// digitsEnd returns the index after the digits from s[i] on.
func digitsEnd(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// literal returns v and the index after lit, if lit is at s[i].
func literal(s string, i int, lit string, v any) (any, int, bool) {
	if len(s)-i < len(lit) || s[i:i+len(lit)] != lit {
		return nil, 0, false
	}
	return v, i + len(lit), true
}

// skipSpace returns the index after the JSON whitespace (space, tab, LF, CR: RFC
// 8259 §2) from s[i] on.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
