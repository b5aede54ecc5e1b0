package token

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// sameAsStrict fails t unless decodeFlat, when it decodes data, builds what the
// strict decoding builds, and data passes every check of the strict decoding.
func sameAsStrict(t *testing.T, data []byte) bool {
	t.Helper()
	got, ok := decodeFlat(data)
	if !ok {
		return false
	}
	if tooDeep(data, MaxJSONDepth) {
		t.Fatalf("decodeFlat took %q, nested too deep", data)
	}
	if err := duplicateMembers(data); err != nil {
		t.Fatalf("decodeFlat took %q, which duplicateMembers refuses: %v", data, err)
	}
	var want map[string]any
	if err := json.Unmarshal(data, &want); err != nil || want == nil {
		t.Fatalf("decodeFlat took %q, which encoding/json refuses: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) || !sameSigns(got, want) {
		t.Fatalf("decodeFlat(%q) = %#v, encoding/json %#v", data, got, want)
	}
	return true
}

// sameSigns tells -0 from 0, which reflect.DeepEqual does not.
func sameSigns(got, want map[string]any) bool {
	var same func(a, b any) bool
	same = func(a, b any) bool {
		switch a := a.(type) {
		case float64:
			return math.Float64bits(a) == math.Float64bits(b.(float64))
		case []any:
			for i := range a {
				if !same(a[i], b.([]any)[i]) {
					return false
				}
			}
		}
		return true
	}
	for k, v := range got {
		if !same(v, want[k]) {
			return false
		}
	}
	return true
}

func TestDecodeFlat(t *testing.T) {
	taken := []string{
		`{}`,
		" \t\r\n{ \"a\" : 1 , \"b\" :[ ] } \n",
		`{"alg":"EdDSA","kid":"k1","typ":"JWT"}`,
		`{"iss":"https://a.example","aud":["x","y"],"exp":1.7e9,"iat":1700000000,"n":-0.5E-3,"z":0,"m":-0}`,
		`{"emailVerified":false,"image":null,"admin":true,"a":[1,"x",null,true,false,2.5]}`,
		"{\"name\":\"Zoë 日本\",\"e\":\"\u2028 raw\"}",
	}
	for _, s := range taken {
		if !sameAsStrict(t, []byte(s)) {
			t.Errorf("decodeFlat left %q to encoding/json", s)
		}
	}
	left := []string{
		``, ` `, `null`, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1}x`, `{"a":1}{}`,
		`{"a":{"b":1}}`, `{"a":[[1]]}`, `{"a":[{"b":1}]}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":[`,
		`{"a\u0062":1}`, `{"a":"\n"}`, `{"a":"\""}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", "{\"\xff\":1}",
		`{"a":1,"a":2}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":-}`, `{"a":+1}`,
		`{"a":1e400}`, `{"a":tru}`, `{"a":truex}`, `{"a":nul}`, `{"a":NaN}`, `{"a":0x1}`, `{'a':1}`, `{a:1}`,
		`{"a":"b}`, `{"a" 1}`,
		"{" + manyMembers(maxFlatMembers+1) + "}",
	}
	for _, s := range left {
		if sameAsStrict(t, []byte(s)) {
			t.Errorf("decodeFlat took %q, which it must leave to encoding/json", s)
		}
	}
	if !sameAsStrict(t, []byte("{"+manyMembers(maxFlatMembers)+"}")) {
		t.Errorf("decodeFlat left %d members to encoding/json", maxFlatMembers)
	}
}

func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"m` + strings.Repeat("x", i) + `":1`)
	}
	return b.String()
}

// TestBetterAuthTokensDecodeFlat: the real tokens' headers and claims take the
// hand decoder, or it would cost nothing but code.
func TestBetterAuthTokensDecodeFlat(t *testing.T) {
	files, err := filepath.Glob("../../testdata/betterauth/*/token.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample tokens: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, part := range strings.Split(strings.TrimSpace(string(raw)), ".")[:2] {
			data, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil {
				t.Fatal(err)
			}
			if !sameAsStrict(t, data) {
				t.Errorf("%s part %d: decodeFlat left %s to encoding/json", f, i, data)
			}
		}
	}
}

// FuzzDecodeFlat holds decodeFlat to encoding/json and the strict checks on any
// input it takes.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range []string{
		`{"alg":"EdDSA","kid":"k1"}`, `{"a":[1,"x",null]}`, `{"a":-0.5e+3}`, `{"a":"\u00e9"}`, `{"a":1,"a":2}`,
		`{"a":{"b":1}}`, "{\"a\":\"\xe9\"}", `{"a":true,"b":false,"c":null}`, ` {"":""} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsStrict(t, data)
	})
}

// TestClaimsKeepOnlyTheirText: a verified token's kept scalars are one allocation
// of exactly their encoding, which holds no pointer and does not overlap the
// decoded payload's text (which would keep the whole payload alive in the cache);
// Subject shares its text.
func TestClaimsKeepOnlyTheirText(t *testing.T) {
	payload := []byte(`{"iss":"https://a.example","sub":"user-1","uuid":"6639900d-cfe5-59ec-bd5c-e0e68598457e",` +
		`"email":"a@example.test","custom":"kept","groups":["g1","g2"],"dropped":"not kept","n":1}`)
	m, ok := decodeFlat(payload)
	if !ok {
		t.Fatal("decodeFlat left a flat payload to encoding/json")
	}
	set, sub := newClaimSet(m, []string{"custom", "email", "groups", "n", "sub", "uuid"}, m["sub"].(string))
	in := func(s string) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(set.enc)))
		return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(set.enc))
	}
	if !in(sub) || sub != "user-1" {
		t.Fatalf("Subject %q is not the set's copy of sub", sub)
	}
	for _, name := range []string{"sub", "uuid", "email", "custom"} {
		if v, ok := set.String(name); !ok || !in(v) || v != m[name] {
			t.Errorf("%s: %q (in the encoding: %v)", name, v, in(v))
		}
	}
	// name bytes, kinds, lengths and text: count 1, custom 1+1+6, email 1+1+1+14,
	// groups 1+1+6+1+1, n 1+1+8, sub 1+1+1+6, uuid 1+1+1+36.
	if want := 1 + (1 + 1 + 6 + 1 + 1 + 4) + (1 + 1 + 1 + 14) + (1 + 1 + 6 + 1 + 1) + (1 + 1 + 1 + 1 + 8) + (1 + 1 + 1 + 6) + (1 + 1 + 1 + 36); len(set.enc) != want {
		t.Errorf("the encoding is %d bytes, want %d", len(set.enc), want)
	}
	payloadAt := uintptr(unsafe.Pointer(unsafe.StringData(m["iss"].(string))))
	lo := uintptr(unsafe.Pointer(unsafe.StringData(set.enc)))
	if lo <= payloadAt+uintptr(len(payload)) && payloadAt <= lo+uintptr(len(set.enc)) {
		t.Fatal("the encoding overlaps the decoded payload's text")
	}
	groups, _ := set.Get("groups")
	if !reflect.DeepEqual(groups, []any{"g1", "g2"}) {
		t.Fatalf("groups %v", groups)
	}
	for _, g := range groups.([]any) {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(g.(string)))); p >= payloadAt && p < payloadAt+uintptr(len(payload)) {
			t.Fatal("an array's string is the payload's text")
		}
	}
	if _, ok := set.Get("dropped"); ok || set.Len() != 6 {
		t.Fatalf("%d claims kept, dropped kept: %v", set.Len(), ok)
	}
}
