package keyset_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

func TestParseSkipsUnusableKeys(t *testing.T) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed")
	noUse := ed.PublicJWK() // Better Auth sends neither use nor key_ops
	doc := fmt.Sprintf(`{"keys":[
		{"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
		{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo","kid":"x25519"},
		{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"enc","use":"enc"},
		%s,
		%s,
		%s
	]}`, weakRSA(t), mustJSON(noUse), mustJSON(noUse))
	keys, skipped, err := keyset.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["ed"].Family() != "EdDSA" {
		t.Fatalf("keys = %v", keys)
	}
	if len(skipped) != 5 {
		t.Fatalf("skipped = %d %q, want 5 (oct, X25519, enc, weak RSA, duplicate)", len(skipped), skipped)
	}
}

func weakRSA(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwk.FromRaw(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = j.Set(jwk.KeyIDKey, "rsa-1024")
	b, _ := json.Marshal(j)
	return string(b)
}

func mustJSON(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestParseSetValidatesKeys: every key that the standard library could not use
// safely is skipped at parse time, never kept as usable.
func TestParseValidatesKeys(t *testing.T) {
	ed := tokentest.NewKey(jwa.EdDSA, "good").PublicJWK()
	es := tokentest.NewKey(jwa.ES256, "es").PublicJWK()
	rs := tokentest.NewKey(jwa.RS256, "rs").PublicJWK()
	with := func(base map[string]any, kid string, kv ...any) string {
		m := maps.Clone(base)
		m["kid"] = kid
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return mustJSON(m)
	}
	x := ed["x"].(string)
	raw, _ := base64.RawURLEncoding.DecodeString(x)
	short := base64.RawURLEncoding.EncodeToString(raw[:31])
	long := base64.RawURLEncoding.EncodeToString(append(raw, 0))
	// (x, y+1) is not on P-256.
	y, _ := base64.RawURLEncoding.DecodeString(es["y"].(string))
	y[len(y)-1]++
	offCurve := base64.RawURLEncoding.EncodeToString(y)
	even := base64.RawURLEncoding.EncodeToString(big.NewInt(65536).Bytes())
	one := base64.RawURLEncoding.EncodeToString([]byte{1})
	cases := []struct{ name, jwk, want string }{
		{"Ed25519 x of 31 bytes", with(ed, "short", "x", short), "31 bytes"},
		{"Ed25519 x of 33 bytes", with(ed, "long", "x", long), "33 bytes"},
		{"EC point off the curve", with(es, "off", "y", offCurve), "not on"},
		{"RSA even exponent", with(rs, "even", "e", even), "exponent"},
		{"RSA exponent 1", with(rs, "one", "e", one), "exponent"},
		{"key_ops without verify", with(ed, "ops", "key_ops", []string{"encrypt"}), "key_ops"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, skipped, err := keyset.Parse([]byte(`{"keys":[` + tc.jwk + `,` + with(ed, "good") + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys["good"] == nil || len(skipped) != 1 || !strings.Contains(skipped[0], tc.want) {
				t.Fatalf("keys %v skipped %q, want only the good key and a reason with %q", keys, skipped, tc.want)
			}
		})
	}
	// key_ops that include verify are fine.
	if keys, _, err := keyset.Parse([]byte(`{"keys":[` + with(ed, "ok", "key_ops", []string{"verify"}) + `]}`)); err != nil || keys["ok"] == nil {
		t.Fatalf("key_ops [verify]: %v %v", keys, err)
	}
	// A key set over the limit is refused whole.
	many := make([]string, keyset.MaxKeys+1)
	for i := range many {
		many[i] = with(ed, fmt.Sprint("k", i))
	}
	if _, _, err := keyset.Parse([]byte(`{"keys":[` + strings.Join(many, ",") + `]}`)); err == nil || !strings.Contains(err.Error(), "more than 100") {
		t.Fatalf("101 keys: %v", err)
	}
}

// TestTooManyKeysKeepsTheLastGoodSet: a refresh that brings a refused set keeps the
// keys already in use.
