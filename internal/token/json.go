package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// MaxJSONDepth bounds the nesting of a JOSE header or claim set. Better Auth's are
// two or three levels deep; a cap keeps a hostile token from costing more than a
// flat one.
const MaxJSONDepth = 32

var (
	errDuplicateMember = errors.New("duplicate member name")
	errEscapedMember   = errors.New("member name with an escape")
	errTooDeep         = fmt.Errorf("nested deeper than %d levels", MaxJSONDepth)
)

// decodeObject decodes one JSON object strictly: a member name that appears twice
// in any object, a member name with an escape, nesting beyond MaxJSONDepth, or data
// after the object is an error. Values decode as encoding/json decodes into any
// (float64 numbers, []any, ...), and member names match case-exactly.
//
// encoding/json keeps the last of two duplicate names silently, and two parsers
// that pick different duplicates read two different tokens from one signature
// (RFC 8725 §3.2). No library reports duplicates without building every value
// twice, so a byte scan (duplicateMembers) checks the names and json.Unmarshal
// then decodes once. The flat objects Better Auth writes take a faster path
// (decodeFlat), which yields the same map or gives up.
func decodeObject(data []byte) (map[string]any, error) {
	if tooDeep(data, MaxJSONDepth) {
		return nil, errTooDeep
	}
	return decodeChecked(data)
}

// decodeChecked is decodeObject for data whose depth the caller has checked.
func decodeChecked(data []byte) (map[string]any, error) {
	if m, ok := decodeFlat(data); ok {
		return m, nil
	}
	if err := duplicateMembers(data); err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// duplicateMembers scans JSON text for a member name that appears twice in one
// object, at any depth, that is not UTF-8, or that holds an escape: "\u0061lg" is alg to a decoder,
// and comparing raw bytes would miss it. Better Auth (JSON.stringify) never
// escapes a name it can write plainly. Text that is not JSON is left to the decoder
// to refuse. The caller has checked the depth with tooDeep.
func duplicateMembers(data []byte) error {
	type level struct {
		object, expectName bool
		first              int // index in names of this object's first name
		// seen holds this object's names once it has many: comparing each new
		// name with all earlier ones would cost an attacker's square.
		seen map[string]struct{}
	}
	type span struct{ from, to int }
	var stack [MaxJSONDepth + 1]level
	var buf [32]span
	names := buf[:0]
	depth := 0
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			end := stringEnd(data, i)
			if end < 0 {
				return nil // unterminated: the decoder refuses it
			}
			if depth > 0 && stack[depth-1].object && stack[depth-1].expectName {
				name := data[i+1 : end]
				if bytes.IndexByte(name, '\\') >= 0 {
					return fmt.Errorf("%w %q", errEscapedMember, reason.Clip(string(name), 64))
				}
				if !utf8.Valid(name) {
					// The decoder would turn each bad byte into U+FFFD: two different
					// raw names could become one.
					return errors.New("member name is not UTF-8")
				}
				lv := &stack[depth-1]
				if lv.seen != nil {
					if _, dup := lv.seen[string(name)]; dup {
						return fmt.Errorf("%w %q", errDuplicateMember, reason.Clip(string(name), 64))
					}
					lv.seen[string(name)] = struct{}{}
				} else {
					for _, s := range names[lv.first:] {
						if bytes.Equal(data[s.from:s.to], name) {
							return fmt.Errorf("%w %q", errDuplicateMember, reason.Clip(string(name), 64))
						}
					}
					if len(names)-lv.first >= linearMembers {
						lv.seen = make(map[string]struct{}, 2*linearMembers)
						for _, s := range names[lv.first:] {
							lv.seen[string(data[s.from:s.to])] = struct{}{}
						}
						lv.seen[string(name)] = struct{}{}
					}
				}
				names = append(names, span{i + 1, end})
				stack[depth-1].expectName = false
			}
			i = end
		case '{', '[':
			if depth == len(stack) {
				return errTooDeep
			}
			stack[depth] = level{object: c == '{', expectName: c == '{', first: len(names)}
			depth++
		case '}', ']':
			if depth == 0 {
				return nil
			}
			depth--
			names = names[:stack[depth].first]
		case ',':
			if depth > 0 && stack[depth-1].object {
				stack[depth-1].expectName = true
			}
		}
	}
	return nil
}

// linearMembers is how many names an object may have before duplicateMembers
// switches from comparing each new name with the earlier ones to a set.
const linearMembers = 16

// stringEnd returns the index of the quote that closes the string opening at
// data[open], or -1.
func stringEnd(data []byte, open int) int {
	for i := open + 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// tooDeep reports whether JSON text nests arrays and objects deeper than max. It is
// a byte scan, run before anything decodes an unverified payload: encoding/json
// has no depth option, and its scanner would otherwise grow a stack per level of a
// hostile token before the signature check could refuse it.
func tooDeep(data []byte, max int) bool {
	depth := 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > max {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}
