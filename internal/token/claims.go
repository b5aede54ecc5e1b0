package token

import (
	"slices"
	"strings"
	"time"
)

// Claim is one claim of a verified token, its value as decoded JSON (string,
// float64, bool, nil, []any or map[string]any).
type Claim struct {
	Name  string
	Value any
}

// ClaimSet holds a verified token's claims as pairs sorted by name. It is compact on
// purpose: the verified-token cache keeps ~100k of them, and a Go map per token
// costs about 1.2 KB where this costs about half.
type ClaimSet []Claim

// newClaimSet converts decoded claims, interning the usual claim names so that
// cached tokens share them. A non-nil keep (sorted) lists the only claims to keep.
func newClaimSet(m map[string]any, keep []string) ClaimSet {
	n := len(m)
	if keep != nil {
		// Exactly as many as are kept: the cache holds ~100k of these.
		n = 0
		for k := range m {
			if _, ok := slices.BinarySearch(keep, k); ok {
				n++
			}
		}
	}
	s := make(ClaimSet, 0, n)
	for k, v := range m {
		if keep != nil {
			if _, ok := slices.BinarySearch(keep, k); !ok {
				continue
			}
		}
		s = append(s, Claim{Name: intern(k), Value: v})
	}
	slices.SortFunc(s, func(a, b Claim) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// Get returns the value of the named claim.
func (s ClaimSet) Get(name string) (any, bool) {
	i, ok := slices.BinarySearchFunc(s, name, func(c Claim, n string) int { return strings.Compare(c.Name, n) })
	if !ok {
		return nil, false
	}
	return s[i].Value, true
}

// Map returns the claims as a new map (for CEL conditions).
func (s ClaimSet) Map() map[string]any {
	m := make(map[string]any, len(s))
	for _, c := range s {
		m[c.Name] = c.Value
	}
	return m
}

// commonNames are the member names Better Auth puts in every token's header and
// claims, sorted.
var commonNames = []string{
	"alg", "aud", "createdAt", "email", "emailVerified", "exp", "iat", "id", "image", "iss", "jti",
	"kid", "name", "nbf", "role", "sub", "typ", "updatedAt", "uuid",
}

func intern(name string) string {
	if i, ok := slices.BinarySearch(commonNames, name); ok {
		return commonNames[i]
	}
	return name
}

// commonByName maps each common name to itself: indexing it with string(b) costs no
// allocation, where a search with a comparison function would copy b each time.
var commonByName = func() map[string]string {
	m := make(map[string]string, len(commonNames))
	for _, n := range commonNames {
		m[n] = n
	}
	return m
}()

// internBytes is intern for a name still in the token's bytes: a common name costs
// no allocation.
func internBytes(name []byte) string {
	if s, ok := commonByName[string(name)]; ok {
		return s
	}
	return string(name)
}

// size estimates the memory a cached entry with this set holds, for the cache's byte
// budget: the entry itself, 32 bytes a claim, and the claims' values (a string's
// text and its 16-byte header, which an interface holds by pointer). Heap
// profiles of 100k cached Better Auth tokens agree within a few percent.
func (s ClaimSet) size() int {
	n := entryOverhead + 32*len(s)
	for _, c := range s {
		switch v := c.Value.(type) {
		case string:
			n += 16 + len(v)
		case float64:
			n += 8
		case []any, map[string]any:
			n += 256 // rough: decoded JSON arrays and objects
		}
	}
	return n
}

// ClaimsOf builds the Claims of a credential verified elsewhere (Better Auth's
// get-session): values become the claim set, with sub as the subject.
func ClaimsOf(issuer string, values map[string]any, expiry time.Time) *Claims {
	sub, _ := values["sub"].(string)
	return &Claims{Issuer: issuer, Subject: sub, Expiry: expiry, Values: newClaimSet(values, nil)}
}
