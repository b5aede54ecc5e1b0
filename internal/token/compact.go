package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// compact is a compact JWS taken apart, before anything is trusted: the header
// parsed strictly, the payload only scanned for depth and its iss.
type compact struct {
	hdr          header
	alg          jwa.SignatureAlgorithm
	payload, sig []byte
	signingInput string
	iss          string
	// claims is the payload decoded strictly, or claimsErr why it is not; both
	// are nil until it is decoded.
	claims    map[string]any
	claimsErr error
}

// parseCompact takes raw apart, refusing what no Better Auth token looks like
// before any key is looked up.
func parseCompact(raw string) (*compact, error) {
	hdrB64, payloadB64, sigB64, ok := splitCompact(raw)
	if !ok {
		return nil, reason.Errorf(reason.TokenMalformed, "not a compact JWS (three base64url parts)")
	}
	if base64.RawURLEncoding.DecodedLen(len(hdrB64)) > MaxHeaderSize {
		return nil, reason.Errorf(reason.TokenMalformed, "header exceeds %d bytes", MaxHeaderSize)
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(hdrB64)
	if err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "header is not base64url", err)
	}
	c := &compact{signingInput: raw[:len(hdrB64)+1+len(payloadB64)]}
	if c.hdr, err = parseHeader(hdrJSON); err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "header is not a valid JSON object", err)
	}
	// We implement no critical extension, so any crit must be refused (RFC 7515 §4.1.11).
	if c.hdr.Crit || c.hdr.B64 {
		return nil, reason.Errorf(reason.TokenMalformed, "header has crit/b64 extensions we do not support")
	}
	if c.hdr.Alg == "" {
		return nil, reason.Errorf(reason.TokenMalformed, "header has no alg")
	}
	// The list's own string, not the header's: cached tokens keep it.
	i := slices.Index(Supported, jwa.SignatureAlgorithm(c.hdr.Alg))
	if i < 0 {
		return nil, reason.Errorf(reason.AlgNotAllowed, "alg %q is not accepted", reason.Clip(c.hdr.Alg, 64))
	}
	c.alg = Supported[i]
	if c.payload, err = base64.RawURLEncoding.DecodeString(payloadB64); err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "payload is not base64url", err)
	}
	if c.sig, err = base64.RawURLEncoding.DecodeString(sigB64); err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "signature is not base64url", err)
	}
	if tooDeep(c.payload, MaxJSONDepth) {
		return nil, reason.Errorf(reason.TokenMalformed, "claims nest deeper than %d levels", MaxJSONDepth)
	}
	if c.iss, err = c.decodePayload(); err != nil {
		return nil, reason.Wrap(reason.TokenMalformed, "claims are not a JSON object with a string iss", err)
	}
	return c, nil
}

// MaxEarlyDecode bounds the payloads decoded in full before their signature is
// checked. Better Auth's are under 1 KiB; a larger (hostile) one gets only the
// lenient peek first, so that a forged token costs what it did before the payload
// was decoded early: a full decoding of 8 KiB of member names costs several times
// the peek.
const MaxEarlyDecode = 1 << 10

// decodePayload returns the iss that selects whose keys to try. A payload of at
// most MaxEarlyDecode bytes is decoded once, strictly, into c.claims for the checks
// after the signature (or its error kept for them to report, in their order), and
// the iss is the claims' iss member, unless another member could pass for it with
// encoding/json's case-insensitive field matching, or the strict decoding failed.
// Otherwise peekIssuer reads it, as it did alone before this decoding moved here,
// so that which issuer's keys are tried, and so every reason code, stays the same.
func (c *compact) decodePayload() (string, error) {
	if len(c.payload) > MaxEarlyDecode {
		return peekIssuer(c.payload) // decoded once its signature has verified
	}
	c.claims, c.claimsErr = decodeChecked(c.payload) // parseCompact checked the depth
	if c.claimsErr == nil {
		if iss, ok := c.claims["iss"].(string); ok && !foldsToIss(c.claims) {
			return iss, nil
		}
	}
	return peekIssuer(c.payload)
}

// foldsToIss reports whether a member other than "iss" might match a struct
// field named iss in encoding/json, which folds case.
func foldsToIss(m map[string]any) bool {
	for k := range m {
		switch {
		case k == "iss":
		case strings.EqualFold(k, "iss"):
			return true
		case len(k) != 3 && utf8.RuneCountInString(k) == 3:
			// Three runes, not all ASCII: Unicode folding (ſ for s) is left to
			// encoding/json to judge.
			return true
		}
	}
	return false
}

// header is the subset of the JOSE header we act on.
type header struct {
	Alg, Kid, Typ string
	// Crit or B64 present: extensions we do not implement.
	Crit, B64 bool
}

// parseHeader decodes the JOSE header strictly (see decodeObject): member names are
// case-exact, so {"ALG":"none"} has no alg, and alg and kid must be strings.
func parseHeader(hdrJSON []byte) (header, error) {
	m, err := decodeObject(hdrJSON)
	if err != nil {
		return header{}, err
	}
	var h header
	var ok bool
	if v, present := m["alg"]; present {
		if h.Alg, ok = v.(string); !ok {
			return header{}, errors.New("alg is not a string")
		}
	}
	if v, present := m["kid"]; present {
		if h.Kid, ok = v.(string); !ok {
			return header{}, errors.New("kid is not a string")
		}
	}
	if v, present := m["typ"]; present {
		if h.Typ, ok = v.(string); !ok {
			return header{}, errors.New("typ is not a string")
		}
	}
	_, h.Crit = m["crit"]
	_, h.B64 = m["b64"]
	return h, nil
}

// peekIssuer reads only iss from the unverified payload, to choose whose keys to
// try. Decoding into a one-field struct skips every other value without building
// it, so a hostile payload costs a scan, not an allocation per element; the full,
// strict decoding waits until the signature has verified.
func peekIssuer(payload []byte) (string, error) {
	var p struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", err
	}
	return p.Iss, nil
}

// splitCompact splits a compact JWS into its three parts. It refuses the JSON
// serialization and anything with more or fewer than two dots.
func splitCompact(raw string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.Contains(s, ".") {
		return "", "", "", false
	}
	return h, p, s, true
}
