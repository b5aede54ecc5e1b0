package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// MaxJSONDepth bounds the nesting of a JOSE header or claim set. Better Auth's are
// two or three levels deep; a cap keeps a hostile token from costing more than a
// flat one.
const MaxJSONDepth = 32

var (
	errDuplicateMember = errors.New("duplicate member name")
	errTooDeep         = fmt.Errorf("nested deeper than %d levels", MaxJSONDepth)
)

// decodeObject decodes one JSON object strictly: a member name that appears twice
// in any object, nesting beyond MaxJSONDepth, or data after the object is an error.
// Values decode as encoding/json decodes into any (float64 numbers, []any, ...),
// and member names match case-exactly.
//
// encoding/json keeps the last of two duplicate names silently, and two parsers
// that pick different duplicates read two different tokens from one signature
// (RFC 8725 §3.2), so the names are checked here with the standard tokenizer.
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m, err := decodeMembers(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON value")
	}
	return m, nil
}

// decodeMembers reads the members of an object whose '{' was just read.
func decodeMembers(dec *json.Decoder, depth int) (map[string]any, error) {
	m := map[string]any{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w %q", errDuplicateMember, reason.Clip(name, 64))
		}
		v, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		m[name] = v
	}
	_, err := dec.Token() // '}'
	return m, err
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := t.(json.Delim)
	if !ok {
		return t, nil
	}
	if depth >= MaxJSONDepth {
		return nil, errTooDeep
	}
	if d == '{' {
		return decodeMembers(dec, depth+1)
	}
	a := []any{}
	for dec.More() {
		v, err := decodeValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
	_, err = dec.Token() // ']'
	return a, err
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
