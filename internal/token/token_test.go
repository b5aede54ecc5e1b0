package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const iss = "https://auth.example.com"

var now = time.Unix(1_800_000_000, 0)

type unavailable struct{}

func (unavailable) Lookup(context.Context, string) (*keyset.Key, error) {
	return nil, keyset.ErrUnavailable
}

func (unavailable) Peek(string) *keyset.Key { return nil }

func static(t *testing.T, keys ...*tokentest.Key) keyset.Static {
	t.Helper()
	s, _, err := keyset.Parse(tokentest.JWKS(keys...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func codeOf(err error) reason.Code {
	var re *reason.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func TestVerifyReasons(t *testing.T) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed-1")
	es := tokentest.NewKey(jwa.ES256, "es-1")
	es512 := tokentest.NewKey(jwa.ES512, "es512-1")
	rs := tokentest.NewKey(jwa.RS256, "rs-1")
	ps := tokentest.NewKey(jwa.PS256, "ps-1")
	other := tokentest.NewKey(jwa.EdDSA, "ed-1") // same kid, different key
	attacker := tokentest.NewKey(jwa.EdDSA, "attacker")
	v := reasonsVerifier(t, static(t, ed, es, es512, rs, ps))
	claims := func(mod func(map[string]any)) map[string]any {
		c := tokentest.Claims(iss, "user1", "6639900d-cfe5-59ec-bd5c-e0e68598457e", now)
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := ed.Sign(claims(nil), nil)
	parts := strings.Split(good, ".")
	hmacWithPublicKey := tokentest.Forge(map[string]any{"alg": "HS256", "kid": "ed-1"}, claims(nil), []byte("sig"))

	cases := []struct {
		name string
		tok  string
		want reason.Code
	}{
		{"valid EdDSA", good, ""},
		{"valid ES256", es.Sign(claims(nil), nil), ""},
		{"valid ES512", es512.Sign(claims(nil), nil), ""},
		{"valid RS256", rs.Sign(claims(nil), nil), ""},
		{"valid PS256", ps.Sign(claims(nil), nil), ""},
		{"aud array containing a configured audience", ed.Sign(claims(func(c map[string]any) { c["aud"] = []string{"other", "https://api.example.com"} }), nil), ""},
		{"typ is optional but allowed", ed.Sign(claims(nil), map[string]any{"typ": "JWT"}), ""},
		{"expired within leeway", ed.Sign(claims(func(c map[string]any) { c["exp"] = now.Add(-20 * time.Second).Unix() }), nil), ""},

		{"too large", strings.Repeat("a", token.MaxSize+1), reason.TokenTooLarge},
		{"one part", "abc", reason.TokenMalformed},
		{"two parts", parts[0] + "." + parts[1], reason.TokenMalformed},
		{"four parts", good + ".x", reason.TokenMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", reason.TokenMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","signatures":[]}`, reason.TokenMalformed},
		{"header not base64url", "!!!." + parts[1] + "." + parts[2], reason.TokenMalformed},
		{"header not JSON", "bm90LWpzb24." + parts[1] + "." + parts[2], reason.TokenMalformed},
		{"payload not JSON", parts[0] + ".bm90LWpzb24." + parts[2], reason.TokenMalformed},
		{"signature not base64url", parts[0] + "." + parts[1] + ".!!!", reason.TokenMalformed},
		{"crit header", tokentest.Forge(map[string]any{"alg": "EdDSA", "kid": "ed-1", "crit": []string{"exp"}, "exp": 1}, claims(nil), []byte("x")), reason.TokenMalformed},
		{"b64 header", tokentest.Forge(map[string]any{"alg": "EdDSA", "kid": "ed-1", "b64": false}, claims(nil), []byte("x")), reason.TokenMalformed},
		{"no exp", ed.Sign(claims(func(c map[string]any) { delete(c, "exp") }), nil), reason.TokenMalformed},
		{"exp not a number", ed.Sign(claims(func(c map[string]any) { c["exp"] = "tomorrow" }), nil), reason.TokenMalformed},

		{"alg none", tokentest.Forge(map[string]any{"alg": "none", "kid": "ed-1"}, claims(nil), nil) + "x", reason.AlgNotAllowed},
		{"HS256 with the public key as secret", hmacWithPublicKey, reason.AlgNotAllowed},
		{"alg not allowed for this issuer", es.Sign(claims(func(c map[string]any) { c["iss"] = "https://eddsa-only.example.com" }), nil), reason.AlgNotAllowed},
		{"alg does not fit the key type", tokentest.Forge(map[string]any{"alg": "ES256", "kid": "ed-1"}, claims(nil), []byte("sig")), reason.AlgNotAllowed},
		{"RSA key pinned to RS256 used as PS256", tokentest.Forge(map[string]any{"alg": "PS256", "kid": "rs-1"}, claims(nil), []byte("sig")), reason.AlgNotAllowed},

		{"unknown kid", attacker.Sign(claims(nil), nil), reason.UnknownKID},
		{"no kid", tokentest.Forge(map[string]any{"alg": "EdDSA"}, claims(nil), []byte("sig")), reason.UnknownKID},
		{"jwk header is never used to find keys", attacker.Sign(claims(nil), map[string]any{"jwk": attacker.JWK(), "jku": "https://evil.example/jwks"}), reason.UnknownKID},
		{"jwks unavailable", ed.Sign(claims(func(c map[string]any) { c["iss"] = "https://down.example.com"; c["aud"] = "https://down.example.com" }), nil), reason.JWKSUnavailable},

		{"signed by another key with the same kid", other.Sign(claims(nil), nil), reason.SignatureInvalid},
		{"payload tampered", parts[0] + "." + tamper(t, parts[1]) + "." + parts[2], reason.SignatureInvalid},

		{"expired", ed.Sign(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), nil), reason.TokenExpired},
		{"nbf in the future", ed.Sign(claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), nil), reason.TokenNotYetValid},
		{"iat in the future", ed.Sign(claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), nil), reason.TokenNotYetValid},
		{"unknown issuer", ed.Sign(claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), nil), reason.IssuerMismatch},
		{"issuer with trailing slash is another issuer", ed.Sign(claims(func(c map[string]any) { c["iss"] = iss + "/" }), nil), reason.IssuerMismatch},
		{"wrong audience", ed.Sign(claims(func(c map[string]any) { c["aud"] = "https://other.example.com" }), nil), reason.AudienceMismatch},
		{"no audience", ed.Sign(claims(func(c map[string]any) { delete(c, "aud") }), nil), reason.AudienceMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.tok)
			if got := codeOf(err); got != tc.want {
				t.Fatalf("reason = %q, want %q (err %v)", got, tc.want, err)
			}
			if tc.want == "" {
				if c == nil || c.Subject != "user1" || get(c, "uuid") != "6639900d-cfe5-59ec-bd5c-e0e68598457e" {
					t.Fatalf("claims = %+v", c)
				}
			} else if err != nil && strings.Contains(err.Error(), tc.tok) && len(tc.tok) > 20 {
				t.Fatalf("error message contains the token")
			}
		})
	}
}

// reasonsVerifier trusts keys for iss and an EdDSA-only issuer, and has a third
// issuer whose JWKS is down.
func reasonsVerifier(t *testing.T, keys keyset.Static) *token.Verifier {
	t.Helper()
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{
		{Issuer: iss, Audiences: []string{iss, "https://api.example.com"}, Keys: keys},
		{Issuer: "https://eddsa-only.example.com", Audiences: []string{"x"}, Algorithms: []jwa.SignatureAlgorithm{jwa.EdDSA}, Keys: keys},
		{Issuer: "https://down.example.com", Audiences: []string{"https://down.example.com"}, Keys: unavailable{}},
	}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tamper(t *testing.T, payload string) string {
	t.Helper()
	// Swap the uuid of the signed claims for another user's: the classic forgery.
	c := map[string]any{}
	b, _ := json.Marshal(tokentest.Claims(iss, "user1", "00000000-0000-0000-0000-000000000002", now))
	_ = json.Unmarshal(b, &c)
	forged := tokentest.Forge(map[string]any{}, c, nil)
	return strings.Split(forged, ".")[1]
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	k := static(t, tokentest.NewKey(jwa.EdDSA, "k"))
	bad := map[string][]token.Issuer{
		"empty iss":     {{Audiences: []string{"a"}, Keys: k}},
		"no audience":   {{Issuer: iss, Keys: k}},
		"HS256 allowed": {{Issuer: iss, Audiences: []string{iss}, Algorithms: []jwa.SignatureAlgorithm{jwa.HS256}, Keys: k}},
		"none allowed":  {{Issuer: iss, Audiences: []string{iss}, Algorithms: []jwa.SignatureAlgorithm{jwa.NoSignature}, Keys: k}},
		"no keys":       {{Issuer: iss, Audiences: []string{iss}}},
		"duplicate":     {{Issuer: iss, Audiences: []string{iss}, Keys: k}, {Issuer: iss, Audiences: []string{iss}, Keys: k}},
	}
	for name, is := range bad {
		if _, err := token.NewVerifier(token.Config{Issuers: is}); err == nil {
			t.Errorf("%s: NewVerifier accepted it", name)
		}
	}
}

// TestBetterAuthSamples verifies real tokens minted by Better Auth 1.7.25 at their own
// iat, and rejects them a day later.
func TestBetterAuthSamples(t *testing.T) {
	for _, alg := range []string{"EdDSA", "ES256", "ES512", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "betterauth", alg)
			jwks, err := os.ReadFile(filepath.Join(dir, "jwks.json"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "token.txt"))
			if err != nil {
				t.Fatal(err)
			}
			var decoded struct {
				Header  map[string]any `json:"header"`
				Payload map[string]any `json:"payload"`
			}
			b, _ := os.ReadFile(filepath.Join(dir, "decoded.json"))
			if err := json.Unmarshal(b, &decoded); err != nil {
				t.Fatal(err)
			}
			if _, hasTyp := decoded.Header["typ"]; hasTyp {
				t.Fatal("sample unexpectedly has typ")
			}
			keys, skipped, err := keyset.Parse(jwks)
			if err != nil || len(skipped) > 0 {
				t.Fatalf("ParseSet: %v %v", err, skipped)
			}
			issuer := decoded.Payload["iss"].(string)
			iat := time.Unix(int64(decoded.Payload["iat"].(float64)), 0)
			verify := func(at time.Time) (*token.Claims, error) {
				v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: issuer, Audiences: []string{issuer}, Keys: keys}}, Now: func() time.Time { return at }})
				if err != nil {
					t.Fatal(err)
				}
				return v.Verify(context.Background(), strings.TrimSpace(string(raw)))
			}
			c, err := verify(iat)
			if err != nil {
				t.Fatalf("at iat: %v", err)
			}
			if string(c.Alg()) != alg || get(c, "uuid") != decoded.Payload["uuid"] || c.Subject != decoded.Payload["sub"] {
				t.Fatalf("claims %+v do not match decoded.json", c)
			}
			if _, err := verify(iat.Add(24 * time.Hour)); codeOf(err) != reason.TokenExpired {
				t.Fatalf("a day later: %v, want token_expired", err)
			}
		})
	}
}

func TestFromAuthorization(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		want   string
		code   reason.Code
	}{
		{"none", nil, "", reason.TokenMissing},
		{"empty", []string{""}, "", reason.TokenMissing},
		{"bearer", []string{"Bearer a.b.c"}, "a.b.c", ""},
		{"scheme case-insensitive", []string{"bEaReR a.b.c"}, "a.b.c", ""},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", reason.TokenMalformed},
		{"two spaces", []string{"Bearer  a.b.c"}, "", reason.TokenMalformed},
		{"tab", []string{"Bearer\ta.b.c"}, "", reason.TokenMalformed},
		{"no token", []string{"Bearer "}, "", reason.TokenMalformed},
		{"scheme only", []string{"Bearer"}, "", reason.TokenMalformed},
		{"two headers", []string{"Bearer a.b.c", "Bearer d.e.f"}, "", reason.TokenMalformed},
		{"joined by a proxy", []string{"Bearer a.b.c, Bearer d.e.f"}, "", reason.TokenMalformed},
		{"trailing space", []string{"Bearer a.b.c "}, "", reason.TokenMalformed},
		{"too large", []string{"Bearer " + strings.Repeat("a", token.MaxSize+1)}, "", reason.TokenTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.FromAuthorization(tc.values)
			if codeOf(err) != tc.code || got != tc.want {
				t.Fatalf("got %q, %v; want %q, %q", got, err, tc.want, tc.code)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	ed := tokentest.NewKey(jwa.EdDSA, "ed-1")
	keys, _, _ := keyset.Parse(tokentest.JWKS(ed))
	v, err := token.NewVerifier(token.Config{Issuers: []token.Issuer{{Issuer: iss, Audiences: []string{iss}, Keys: keys}}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	good := ed.Sign(tokentest.Claims(iss, "u", "x", now), nil)
	f.Add(good)
	f.Add("a.b.c")
	f.Add(tokentest.Forge(map[string]any{"alg": "none"}, map[string]any{"iss": iss}, nil))
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw)
		if err == nil {
			// Only a correctly signed token may pass; the fuzzer cannot forge Ed25519.
			if raw != good && get(c, "iss") != iss {
				t.Fatalf("accepted %q", raw)
			}
			return
		}
		if codeOf(err) == "" {
			t.Fatalf("error without a reason code: %v", err)
		}
	})
}

func get(c *token.Claims, name string) any {
	v, _ := c.Values.Get(name)
	return v
}

// TestStrictJSON covers what encoding/json would let through: numeric strings as
// dates, exp 0, duplicate members, header names in another case, deep nesting. The
// tokens are correctly signed, so only the strict decoding can refuse them.
