package token

import (
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// jwxRegistered is how claims were typed and validated with jwx before
// readRegistered and checkTimes replaced it; the differential test below holds
// the replacement to it.
func jwxRegistered(claims map[string]any, now time.Time, leeway time.Duration) (reason.Code, []string) {
	tok := jwt.New()
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"} {
		if v, ok := claims[name]; ok {
			if err := tok.Set(name, v); err != nil {
				return reason.TokenMalformed, nil
			}
		}
	}
	err := jwt.Validate(tok, jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })), jwt.WithAcceptableSkew(leeway))
	switch {
	case err == nil:
		return "", tok.Audience()
	case errors.Is(err, jwt.ErrTokenExpired()):
		return reason.TokenExpired, nil
	case errors.Is(err, jwt.ErrTokenNotYetValid()), errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return reason.TokenNotYetValid, nil
	}
	return reason.TokenMalformed, nil
}

func ours(claims map[string]any, now time.Time, leeway time.Duration) (reason.Code, []string) {
	r, err := readRegistered(claims)
	if err == nil {
		err = checkTimes(r, now, leeway)
	}
	var re *reason.Error
	if errors.As(err, &re) {
		return re.Code, nil
	}
	if err != nil {
		return "unexpected: " + reason.Code(err.Error()), nil
	}
	return "", r.aud
}

func TestRegisteredClaimsAsJWX(t *testing.T) {
	now := time.Unix(1_800_000_000, 400_000_000)
	n := float64(now.Unix())
	dates := []any{1.0, 0.0, 0.5, 1.9999999999, math.Copysign(0, -1), -1.0, -1e-12, n, n - 1, n + 1, n - 30, n + 30, n - 31, n + 31,
		n + 0.9, n - 0.6, n + 29.9999999999, n - 29.5, n + 30.5, 9.2e18, 9.3e18, 1e19, 1e300, 253402300799, 1e11, 4.0e10,
		9.2233720305e18, 9.223372036854775e18, math.Ldexp(1, 63), math.Ldexp(1, 63) - 1024}
	others := []any{"1800000000", nil, true, []any{1.0}, map[string]any{}}
	auds := []any{"a", []any{}, []any{"a", "b"}, []any{"a", 1.0}, []any{nil}, 5.0, nil, map[string]any{"a": "b"}}
	strs := []any{"x", "", 5.0, nil, []any{"x"}, false}
	var cases []map[string]any
	for _, exp := range append(dates, others...) {
		for _, nbf := range []any{nil, n, n + 31, n + 30, -1.0, "x"} {
			for _, iat := range []any{nil, n, n + 31, n - 1000, math.Copysign(0, -1), 1e19} {
				c := map[string]any{"exp": exp}
				if nbf != nil {
					c["nbf"] = nbf
				}
				if iat != nil {
					c["iat"] = iat
				}
				cases = append(cases, c)
			}
		}
	}
	for _, d := range dates {
		cases = append(cases, map[string]any{"exp": n + 3600, "nbf": d}, map[string]any{"exp": n + 3600, "iat": d}, map[string]any{"exp": d})
	}
	for _, a := range auds {
		cases = append(cases, map[string]any{"exp": n + 60, "aud": a})
	}
	for _, s := range strs {
		for _, name := range []string{"iss", "sub", "jti"} {
			cases = append(cases, map[string]any{"exp": n + 60, name: s, "nbf": "bad"})
		}
	}
	for _, leeway := range []time.Duration{0, time.Nanosecond, 999 * time.Millisecond, 30 * time.Second, 1500 * time.Millisecond} {
		for _, c := range cases {
			if checkNumericDates(c) != nil {
				continue // refused before either runs
			}
			wantCode, wantAud := jwxRegistered(c, now, leeway)
			gotCode, gotAud := ours(c, now, leeway)
			if gotCode != wantCode || fmt.Sprint(gotAud) != fmt.Sprint(wantAud) {
				t.Errorf("leeway %s, claims %v: got %q %v, jwx %q %v", leeway, c, gotCode, gotAud, wantCode, wantAud)
			}
		}
	}
	if len(cases) < 500 {
		t.Fatalf("only %d cases", len(cases))
	}
}

// TestIssuerSelectionAsPeek: the iss that picks whose keys to try is the one the
// lenient peek alone chose, for every spelling a payload can give it, and a
// payload the peek refused is refused.
func TestIssuerSelectionAsPeek(t *testing.T) {
	payloads := []string{
		`{"iss":"a"}`, `{"ISS":"a"}`, `{"iss":"a","ISS":"b"}`, `{"ISS":"b","iss":"a"}`, `{"Iss":"a","iSs":"b"}`,
		`{"iſs":"x"}`, `{"iss":"a","iſs":"x"}`, `{"iſs":"x","iss":"a"}`, `{"iss":"a","İss":"b"}`, `{"iss":1}`, `{"iss":null}`,
		`{"iss":"a","iss":"b"}`, `{"\u0069ss":"a"}`, `{"a":1}`, `[1]`, `null`, `"iss"`, `{"iss":"a","x":{"iss":"b"}}`,
		`{"iss":["a"]}`, `{"iss":"a"} x`, `{"iss":"a\u0000"}`, `{"ISS":1,"iss":"a"}`, `{"iss":"a","ISS":1}`,
	}
	for _, p := range payloads {
		want, wantErr := peekIssuer([]byte(p))
		c := &compact{payload: []byte(p)}
		got, err := c.decodePayload()
		if (err != nil) != (wantErr != nil) || got != want {
			t.Errorf("%s: iss %q (err %v), the peek: %q (err %v)", p, got, err, want, wantErr)
		}
	}
}

// TestEntrySize: a cache entry fits the 128-byte allocation class; 100k of them
// are most of a busy replica's memory, and one more field costs 1.6 MiB there.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(cacheEntry{}); n > 128 {
		t.Fatalf("cacheEntry is %d bytes, past the 128-byte size class", n)
	}
}

// TestManyMembers: past linearMembers names an object's duplicates are found
// through a set, in every object, at any depth, and the set of one object does
// not leak into its sibling.
func TestManyMembers(t *testing.T) {
	obj := func(n int, extra string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			fmt.Fprintf(&b, `"m%04d":0,`, i)
		}
		b.WriteString(extra + "}")
		return b.String()
	}
	for _, tc := range []struct {
		doc string
		dup bool
	}{
		{obj(600, `"last":1`), false},
		{obj(600, `"m0000":1`), true},
		{obj(600, `"m0599":1`), true},
		{obj(15, `"m0003":1`), true},
		{`{"a":` + obj(40, `"m0039":1`) + `}`, true},
		{`{"a":` + obj(40, `"x":1`) + `,"b":` + obj(40, `"y":1`) + `}`, false},
		{`{"a":` + obj(40, `"x":1`) + `,"a":1}`, true},
		{`[` + obj(40, `"x":1`) + `,` + obj(40, `"x":1`) + `]`, false},
	} {
		err := duplicateMembers([]byte(tc.doc))
		if (err != nil) != tc.dup {
			t.Errorf("%.60s…: duplicate error %v, want one: %v", tc.doc, err, tc.dup)
		}
	}
}

// TestLargePayloadDecodedLate: a payload past MaxEarlyDecode is only peeked at
// before its signature is checked.
func TestLargePayloadDecodedLate(t *testing.T) {
	small := &compact{payload: []byte(`{"iss":"a","n":1}`)}
	large := &compact{payload: []byte(`{"iss":"a","pad":"` + strings.Repeat("x", MaxEarlyDecode) + `"}`)}
	for _, c := range []*compact{small, large} {
		if iss, err := c.decodePayload(); iss != "a" || err != nil {
			t.Fatalf("iss %q, %v", iss, err)
		}
	}
	if small.claims == nil || large.claims != nil || large.claimsErr != nil {
		t.Fatalf("decoded before the signature: small %v, large %v", small.claims != nil, large.claims != nil || large.claimsErr != nil)
	}
}

// TestSignaturesAsJWS: verifySignature accepts and refuses exactly what jwx's jws
// verifiers did, for every supported algorithm, on good and damaged signatures
// and on keys of the wrong family.
func TestSignaturesAsJWS(t *testing.T) {
	keys := map[jwa.SignatureAlgorithm]*keyset.Key{}
	for _, alg := range Supported {
		k := tokentest.NewKey(alg, "k-"+alg.String())
		ks, _, err := keyset.Parse(tokentest.JWKS(k))
		if err != nil {
			t.Fatal(err)
		}
		keys[alg] = ks.Peek(k.KID)
		tok := k.Sign(map[string]any{"iss": "x", "exp": 2e9}, nil)
		i := strings.LastIndexByte(tok, '.')
		input := tok[:i]
		sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if err != nil {
			t.Fatal(err)
		}
		flipped := slices.Clone(sig)
		flipped[len(flipped)/2] ^= 1
		sigs := map[string][]byte{"good": sig, "flipped": flipped, "short": sig[:len(sig)-1], "long": append(slices.Clone(sig), 0),
			"empty": nil, "doubled": append(slices.Clone(sig), sig...)}
		inputs := map[string]string{"same": input, "other": input + "x"}
		for sn, sg := range sigs {
			for in, msg := range inputs {
				for _, kalg := range []jwa.SignatureAlgorithm{alg, jwa.EdDSA, jwa.ES256, jwa.RS256} {
					key := keys[kalg]
					if key == nil {
						continue
					}
					v, err := jws.NewVerifier(alg)
					if err != nil {
						t.Fatal(err)
					}
					want := v.Verify([]byte(msg), sg, key.Public) == nil
					got := verifySignature(alg, key.Public, msg, sg) == nil
					if got != want {
						t.Errorf("%s, %s key, %s signature, %s input: verified %v, jws %v", alg, kalg, sn, in, got, want)
					}
					sameKey := key.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(keys[alg].Public) // RS* and PS* share one
					if want && (sn != "good" || in != "same" || !sameKey) {
						t.Errorf("%s, %s key, %s signature, %s input: jws verified it", alg, kalg, sn, in)
					}
				}
			}
		}
	}
}
