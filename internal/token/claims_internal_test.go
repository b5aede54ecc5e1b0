package token

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// sameClaims fails t unless set holds exactly m's claims (those keep lists, when
// not nil), in name order, each read back by Get, String and All as decoded.
func sameClaims(t *testing.T, m map[string]any, keep []string, set ClaimSet) {
	t.Helper()
	want := map[string]any{}
	for k, v := range m {
		if keep == nil || slices.Contains(keep, k) {
			want[k] = v
		}
	}
	var names []string
	for k, v := range set.All() {
		names = append(names, k)
		if !sameValue(v, want[k]) {
			t.Fatalf("All: %q is %#v, want %#v", k, v, want[k])
		}
	}
	if !slices.IsSorted(names) || len(names) != len(want) || set.Len() != len(want) {
		t.Fatalf("claims %q (Len %d), want the %d of %v in order", names, set.Len(), len(want), want)
	}
	for k, v := range want {
		got, ok := set.Get(k)
		if !ok || !sameValue(got, v) {
			t.Fatalf("Get(%q) = %#v, %v; want %#v", k, got, ok, v)
		}
		s, isString := v.(string)
		if got, ok := set.String(k); ok != isString || got != s {
			t.Fatalf("String(%q) = %q, %v; want %q, %v", k, got, ok, s, isString)
		}
	}
	for _, absent := range []string{"", "absent", "zzzz", "\xff", "su", "subb"} {
		if _, in := want[absent]; in {
			continue
		}
		if v, ok := set.Get(absent); ok {
			t.Fatalf("Get(%q) = %#v for a claim not kept", absent, v)
		}
		if _, ok := set.String(absent); ok {
			t.Fatalf("String(%q) found a claim not kept", absent)
		}
	}
	if got := set.Map(); !sameValue(got, want) {
		t.Fatalf("Map() = %#v, want %#v", got, want)
	}
}

// sameValue compares decoded JSON, numbers by their bits (so that -0 is not 0).
func sameValue(a, b any) bool {
	if x, ok := a.(float64); ok {
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	}
	return reflect.DeepEqual(a, b)
}

func TestClaimSet(t *testing.T) {
	long := strings.Repeat("é", 200) // a length past one uvarint byte
	many := map[string]any{}
	for i := range 300 {
		many[strings.Repeat("m", i%7+1)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = float64(i)
	}
	for _, tc := range []struct {
		name string
		m    map[string]any
		keep []string
		sub  string
	}{
		{"empty", map[string]any{}, nil, ""},
		{"nothing kept", map[string]any{"sub": "u"}, []string{}, "u"},
		{"Better Auth's", map[string]any{
			"iss": "https://a.example", "aud": "https://a.example", "sub": "user-1", "exp": float64(1e9), "iat": float64(1e9 - 900),
			"uuid": "6639900d-cfe5-59ec-bd5c-e0e68598457e", "email": "a@example.test", "emailVerified": true,
			"name": long, "image": nil, "role": "admin,user", "banned": false, "createdAt": "2026-01-01T00:00:00.000Z",
		}, nil, "user-1"},
		{"kept subset", map[string]any{"sub": "s", "uuid": "u", "email": "e", "other": "o"}, []string{"email", "sub", "uuid"}, "s"},
		{"numbers", map[string]any{"zero": 0.0, "neg": math.Copysign(0, -1), "big": 1e308, "tiny": 5e-324, "int": float64(1 << 53)}, nil, ""},
		{"arrays and objects", map[string]any{"groups": []any{"a", 1.0, nil, true}, "org": map[string]any{"o1": "owner"}, "empty": []any{}}, nil, ""},
		{"odd names", map[string]any{"": "empty name", "\x00": "nul", long: "long name", "sub": ""}, nil, ""},
		{"sub not a claim", map[string]any{"uuid": "u"}, nil, "session-user"},
		{"sub claim differs", map[string]any{"sub": "claim"}, nil, "reshaped"},
		{"300 claims", many, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, sub := newClaimSet(tc.m, tc.keep, tc.sub)
			sameClaims(t, tc.m, tc.keep, set)
			if sub != tc.sub {
				t.Fatalf("subject %q, want %q", sub, tc.sub)
			}
		})
	}
}

// TestClaimSetZero: the zero ClaimSet is an empty set.
func TestClaimSetZero(t *testing.T) {
	var set ClaimSet
	sameClaims(t, map[string]any{}, nil, set)
}

// TestClaimSetBroken: an encoding cut anywhere, or with a bad byte, loses claims
// rather than misreading one or panicking.
func TestClaimSetBroken(t *testing.T) {
	set, _ := newClaimSet(map[string]any{"sub": "user-1", "n": 2.0, "custom": "v", "t": true, "a": []any{"x"}}, nil, "user-1")
	for i := range len(set.enc) {
		cut := ClaimSet{enc: set.enc[:i], more: set.more}
		for k, v := range cut.All() {
			if w, _ := set.Get(k); !sameValue(v, w) {
				t.Fatalf("cut at %d: %q read as %#v, is %#v", i, k, v, w)
			}
		}
		for _, b := range []byte{0xfe, 0xff, 0x80, 'q'} {
			bad := []byte(set.enc)
			bad[i] = b
			for range (ClaimSet{enc: string(bad)}).All() { // no more: kindOther must not index it
			}
		}
	}
}

// FuzzClaimSet: any JSON object the verifier accepts survives newClaimSet, all of
// it or a kept part.
func FuzzClaimSet(f *testing.F) {
	for _, seed := range []string{
		`{"sub":"u","uuid":"x","n":1.5,"b":true,"z":null,"a":["s",2],"o":{"k":"v"}}`,
		`{"":"","\u0000":0,"x":-0,"exp":1e300}`,
	} {
		f.Add([]byte(seed), "sub,x")
	}
	f.Fuzz(func(t *testing.T, data []byte, keepList string) {
		m, err := decodeChecked(data)
		if err != nil {
			return
		}
		sub, _ := m["sub"].(string)
		set, gotSub := newClaimSet(m, nil, sub)
		sameClaims(t, m, nil, set)
		if gotSub != sub {
			t.Fatalf("subject %q, want %q", gotSub, sub)
		}
		keep := strings.Split(keepList, ",")
		slices.Sort(keep)
		keep = slices.Compact(keep)
		set, _ = newClaimSet(m, keep, sub)
		sameClaims(t, m, keep, set)
	})
}

// TestClaimSetSize: what the cache charges an entry is near what it holds on the
// heap, for a Better Auth token and for one with a large kept array, which a flat
// charge per array once undercounted a hundredfold.
func TestClaimSetSize(t *testing.T) {
	groups := make([]any, 1500)
	for i := range groups {
		groups[i] = fmt.Sprintf("group-%04d", i)
	}
	for _, tc := range []struct {
		name    string
		n       int // entries: enough that what else runs meanwhile is lost in them
		payload map[string]any
	}{
		{"Better Auth's", 5000, map[string]any{"sub": "user-1", "uuid": "6639900d-cfe5-59ec-bd5c-e0e68598457e", "email": "a@example.test"}},
		{"large array", 100, map[string]any{"sub": "user-1", "groups": groups, "orgs": map[string]any{"o1": "owner", "o2": "member"}}},
	} {
		payload, n := tc.payload, tc.n
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(payload)
			if err != nil {
				t.Fatal(err)
			}
			entries := make([]*cacheEntry, n)
			var before, after runtime.MemStats
			runtime.GC() // twice: what an earlier test left is swept, not only marked
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range entries {
				m, err := decodeChecked(data)
				if err != nil {
					t.Fatal(err)
				}
				set, sub := newClaimSet(m, nil, "user-1")
				entries[i] = &cacheEntry{claims: Claims{Subject: sub, Values: set}}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
			charged := float64(entries[0].size() - 56) // less the map's share, not allocated here
			if charged < 0.8*held || charged > 1.5*held {
				t.Fatalf("an entry holds %.0f B on the heap and is charged %.0f", held, charged)
			}
			runtime.KeepAlive(entries)
		})
	}
}
