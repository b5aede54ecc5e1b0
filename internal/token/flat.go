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
		name  string // a slice of text
		value any
	}
	var buf [16]member // a Better Auth claim set fits; up to maxFlatMembers spill to the heap
	members := buf[:0]
	// One copy of the text for every string in it, rather than one allocation a
	// string; newClaimSet copies what a cached token keeps out of it.
	text := string(data)
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			if i == len(data) || data[i] != '"' || len(members) == maxFlatMembers {
				return nil, false
			}
			end, ok := plainString(data, i)
			if !ok {
				return nil, false
			}
			// Comparing raw text is comparing names only because plainString
			// refuses escapes and bytes that are not UTF-8.
			name := text[i+1 : end]
			for _, m := range members {
				if m.name == name {
					return nil, false
				}
			}
			i = skipSpace(data, end+1)
			if i == len(data) || data[i] != ':' {
				return nil, false
			}
			var v any
			if v, i, ok = flatValue(data, text, skipSpace(data, i+1), false); !ok {
				return nil, false
			}
			members = append(members, member{name, v})
			i = skipSpace(data, i)
			if i == len(data) {
				return nil, false
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return nil, false
			}
			i = skipSpace(data, i+1)
		}
	}
	if skipSpace(data, i) != len(data) {
		return nil, false
	}
	m := make(map[string]any, len(members))
	for _, mb := range members {
		m[intern(mb.name)] = mb.value
	}
	return m, true
}

// flatValue decodes the scalar at data[i], or an array of scalars unless inArray
// (so nothing nests deeper than a member's array), and returns it with the index
// after it. text is data as a string.
func flatValue(data []byte, text string, i int, inArray bool) (any, int, bool) {
	if i == len(data) {
		return nil, 0, false
	}
	switch c := data[i]; {
	case c == '"':
		end, ok := plainString(data, i)
		if !ok {
			return nil, 0, false
		}
		return text[i+1 : end], end + 1, true
	case c == '-' || c >= '0' && c <= '9':
		end := numberEnd(data, i)
		if end < 0 {
			return nil, 0, false
		}
		f, err := strconv.ParseFloat(string(data[i:end]), 64)
		if err != nil {
			return nil, 0, false // out of range: encoding/json's error
		}
		return f, end, true
	case c == 't':
		return literal(data, i, "true", true)
	case c == 'f':
		return literal(data, i, "false", false)
	case c == 'n':
		return literal(data, i, "null", nil)
	case c == '[' && !inArray:
		a := []any{}
		i = skipSpace(data, i+1)
		if i < len(data) && data[i] == ']' {
			return a, i + 1, true
		}
		for {
			v, next, ok := flatValue(data, text, i, true)
			if !ok {
				return nil, 0, false
			}
			a = append(a, v)
			i = skipSpace(data, next)
			if i == len(data) {
				return nil, 0, false
			}
			if data[i] == ']' {
				return a, i + 1, true
			}
			if data[i] != ',' {
				return nil, 0, false
			}
			i = skipSpace(data, i+1)
		}
	}
	return nil, 0, false
}

// plainString returns the index of the quote closing the string that opens at
// data[open], if the string has no escape, no control character and is UTF-8:
// then its bytes are its value.
func plainString(data []byte, open int) (int, bool) {
	ascii := true
	for i := open + 1; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i, ascii || utf8.Valid(data[open+1:i])
		case c == '\\' || c < 0x20:
			return 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, false
}

// numberEnd returns the index after the JSON number at data[i] (RFC 8259 §6), or
// -1; i < len(data).
func numberEnd(data []byte, i int) int {
	if data[i] == '-' {
		i++
	}
	switch {
	case i == len(data):
		return -1
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = digitsEnd(data, i)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		if j := digitsEnd(data, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if j := digitsEnd(data, i); j > i {
			i = j
		} else {
			return -1
		}
	}
	return i
}

// digitsEnd returns the index after the digits from data[i] on.
func digitsEnd(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// literal returns v and the index after lit, if lit is at data[i].
func literal(data []byte, i int, lit string, v any) (any, int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return nil, 0, false
	}
	return v, i + len(lit), true
}

// skipSpace returns the index after the JSON whitespace (space, tab, LF, CR: RFC
// 8259 §2) from data[i] on.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
