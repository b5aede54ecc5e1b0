package token_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

func TestStrictJSON(t *testing.T) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed-1")
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{iss}, Keys: static(t, ed)}}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const hdr = `{"alg":"EdDSA","kid":"ed-1"}`
	exp, iat := fmt.Sprint(now.Add(time.Minute).Unix()), fmt.Sprint(now.Unix())
	body := func(extra string) string {
		return `{"iss":"` + iss + `","aud":"` + iss + `","sub":"u1","iat":` + iat + `,"exp":` + exp + extra + `}`
	}
	deep := strings.Repeat("[", token.MaxJSONDepth+1) + strings.Repeat("]", token.MaxJSONDepth+1)
	cases := []struct {
		name, header, payload string
		want                  reason.Code
	}{
		{"valid", hdr, body(""), ""},
		{"nested within the cap", hdr, body(`,"x":` + strings.Repeat("[", token.MaxJSONDepth-2) + strings.Repeat("]", token.MaxJSONDepth-2)), ""},
		{"exp as a numeric string", hdr, `{"iss":"` + iss + `","aud":"` + iss + `","exp":"` + exp + `"}`, reason.TokenMalformed},
		{"exp zero (jwx reads it as no expiry)", hdr, `{"iss":"` + iss + `","aud":"` + iss + `","exp":0}`, reason.TokenMalformed},
		{"exp negative", hdr, `{"iss":"` + iss + `","aud":"` + iss + `","exp":-1}`, reason.TokenMalformed},
		{"exp null", hdr, `{"iss":"` + iss + `","aud":"` + iss + `","exp":null}`, reason.TokenMalformed},
		{"nbf as a string", hdr, body(`,"nbf":"` + iat + `"`), reason.TokenMalformed},
		{"iat as a string", hdr, `{"iss":"` + iss + `","aud":"` + iss + `","exp":` + exp + `,"iat":"` + iat + `"}`, reason.TokenMalformed},
		{"duplicate claim", hdr, body(`,"sub":"admin"`), reason.TokenMalformed},
		{"duplicate iss", hdr, body(`,"iss":"` + iss + `"`), reason.TokenMalformed},
		{"duplicate nested member", hdr, body(`,"user":{"role":"user","role":"admin"}`), reason.TokenMalformed},
		{"duplicate member in an object in an array", hdr, body(`,"x":[{"a":1,"b":{"a":2},"a":3}]`), reason.TokenMalformed},
		{"same name in sibling objects", hdr, body(`,"x":[{"a":1},{"a":2}],"y":{"a":{"a":1}}`), ""},
		{"names inside string values", hdr, body(`,"v":"\"sub\":1,{\"sub\":2","w":["sub","sub"]`), ""},
		{"names that differ only in bytes that are not UTF-8", hdr, body(",\"a\xff\":1,\"a\xfe\":2"), reason.TokenMalformed},
		{"escaped member name", hdr, body(`,"\u0073ub2":"x"`), reason.TokenMalformed},
		{"escaped duplicate of sub", hdr, body(`,"su\u0062":"admin"`), reason.TokenMalformed},
		{"escaped header member", `{"alg":"EdDSA","kid":"ed-1","\u0061lg":"none"}`, body(""), reason.TokenMalformed},
		{"payload null (no iss, so no issuer)", hdr, `null`, reason.IssuerMismatch},
		{"payload nested too deep", hdr, body(`,"x":` + deep), reason.TokenMalformed},
		{"iss spelt ISS", hdr, `{"ISS":"` + iss + `","aud":"` + iss + `","exp":` + exp + `}`, reason.IssuerMismatch},
		{"trailing data after the payload", hdr, body("") + `{}`, reason.TokenMalformed},
		{"duplicate alg", `{"alg":"EdDSA","kid":"ed-1","alg":"none"}`, body(""), reason.TokenMalformed},
		{"duplicate kid", `{"alg":"EdDSA","kid":"ed-1","kid":"other"}`, body(""), reason.TokenMalformed},
		{"header ALG is not alg", `{"ALG":"EdDSA","kid":"ed-1"}`, body(""), reason.TokenMalformed},
		{"header Kid is not kid", `{"alg":"EdDSA","Kid":"ed-1"}`, body(""), reason.UnknownKID},
		{"header Crit is not crit, and is ignored", `{"alg":"EdDSA","kid":"ed-1","Crit":["x"]}`, body(""), ""},
		{"alg not a string", `{"alg":["EdDSA"],"kid":"ed-1"}`, body(""), reason.TokenMalformed},
		{"kid not a string", `{"alg":"EdDSA","kid":1}`, body(""), reason.TokenMalformed},
		{"header nested too deep", `{"alg":"EdDSA","kid":"ed-1","x":` + deep + `}`, body(""), reason.TokenMalformed},
		{"header not an object", `["EdDSA"]`, body(""), reason.TokenMalformed},
		{"header at MaxHeaderSize", `{"alg":"EdDSA","kid":"ed-1","x":"` + strings.Repeat("x", token.MaxHeaderSize-36) + `"}`, body(""), ""},
		{"header over MaxHeaderSize", `{"alg":"EdDSA","kid":"ed-1","x":"` + strings.Repeat("x", token.MaxHeaderSize) + `"}`, body(""), reason.TokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), ed.SignRaw(tc.header, tc.payload))
			if got := codeOf(err); got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

// BenchmarkVerifyBadSignature compares 8 KiB tokens with a bad signature: flat, nested
// 2900 deep (refused by the depth scan before any decoding), and many arrays nested
// just within the cap. Nesting must not make a denial costlier than the flat token:
// before the signature verifies, the payload is only scanned for depth and iss.
func BenchmarkVerifyBadSignature(b *testing.B) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed-1")
	forger := tokentest.NewKey(jwa.EdDSA, "ed-1")
	keys, _, _ := keyset.Parse(tokentest.JWKS(ed))
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{iss}, Keys: keys}}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	const n = 2900
	inCap := strings.Repeat("[", token.MaxJSONDepth-2) + strings.Repeat("]", token.MaxJSONDepth-2)
	payloads := map[string]string{
		"flat":          `{"iss":"` + iss + `","x":"` + strings.Repeat("a", 2*n) + `"}`,
		"nested":        `{"iss":"` + iss + `","x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`,
		"nested-in-cap": `{"iss":"` + iss + `","x":[` + strings.Repeat(inCap+",", 2*n/(len(inCap)+1)-1) + inCap + `]}`,
	}
	for _, name := range []string{"flat", "nested", "nested-in-cap"} {
		tok := forger.SignRaw(`{"alg":"EdDSA","kid":"ed-1"}`, payloads[name])
		if len(tok) > token.MaxSize || len(tok) < token.MaxSize-512 {
			b.Fatalf("%s token is %d bytes, want just under %d", name, len(tok), token.MaxSize)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err == nil {
					b.Fatal("a forged token verified")
				}
			}
		})
	}
}
