package token

import (
	"encoding/binary"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// ClaimSet holds a verified token's claims, sorted by name. Its zero value is an
// empty set; it is immutable.
//
// It is compact on purpose: the verified-token cache keeps ~100k of them. Names and
// scalar values (strings, numbers, booleans, null) are encoded into one string,
// each claim a few bytes of framing beside its text, so that a cached token's
// claims are one allocation without pointers: a []Claim with boxed values cost
// three allocations and about 130 bytes more a Better Auth token, and gave the
// garbage collector pointers to follow in every one. Arrays and objects, rare in
// what policies keep, stay decoded beside it.
//
// The encoding is private, written by newClaimSet and read by claimReader (no
// library offers a pointer-free, copy-free record of decoded JSON scalars). It is
// a uvarint count, then per claim its name (a byte indexing commonNames, or
// nameLiteral, a uvarint length and the name), a kind byte and the value (a
// string's uvarint length and text; a number's 8 bytes of IEEE 754 bits,
// big-endian; for kindOther, a uvarint index into more). Bytes after the last
// claim belong to no claim (the subject's text, when it is not a kept claim).
type ClaimSet struct {
	enc  string
	more *[]any
}

// The kinds of encoded values.
const (
	kindString = 's'
	kindNumber = 'n'
	kindTrue   = 't'
	kindFalse  = 'f'
	kindNull   = 'z'
	kindOther  = 'c' // an array, object or other decoded value, held in more

	nameLiteral = 0xff // a name not in commonNames follows
)

func init() {
	if len(commonNames) >= nameLiteral {
		panic("token: too many common claim names for one byte")
	}
}

// newClaimSet converts decoded claims. A non-nil keep (sorted) lists the only claims
// to keep. It returns the set and the subject sub, which shares the set's copy of
// the sub claim when that is sub and kept, and is copied into the set otherwise.
//
// Strings are copied: strings decoded by decodeFlat share the whole payload's
// text, which a cached token must not keep alive. So are arrays, for the same
// reason; objects come from encoding/json, whose strings are their own.
func newClaimSet(m map[string]any, keep []string, sub string) (ClaimSet, string) {
	var buf [16]string
	kept := buf[:0]
	for k := range m {
		if keep != nil {
			if _, ok := slices.BinarySearch(keep, k); !ok {
				continue
			}
		}
		kept = append(kept, k)
	}
	slices.Sort(kept)
	// The exact length first, so that the one allocation is the right size and
	// the subject can point into it.
	n, others := uvarintLen(uint64(len(kept))), 0
	for _, k := range kept {
		n += nameLen(k) + 1
		switch v := m[k].(type) {
		case string:
			n += uvarintLen(uint64(len(v))) + len(v)
		case float64:
			n += 8
		case bool, nil:
		default:
			n += uvarintLen(uint64(others))
			others++
		}
	}
	subKept := false
	if v, ok := m["sub"].(string); ok && v == sub && slices.Contains(kept, "sub") {
		subKept = true
	} else {
		n += len(sub)
	}
	b := make([]byte, 0, n)
	var more []any
	if others > 0 {
		more = make([]any, 0, others)
	}
	b = binary.AppendUvarint(b, uint64(len(kept)))
	subAt := -1
	for _, k := range kept {
		if i, ok := commonIndex(k); ok {
			b = append(b, byte(i))
		} else {
			b = append(b, nameLiteral)
			b = binary.AppendUvarint(b, uint64(len(k)))
			b = append(b, k...)
		}
		switch v := m[k].(type) {
		case string:
			b = append(b, kindString)
			b = binary.AppendUvarint(b, uint64(len(v)))
			if k == "sub" && subKept {
				subAt = len(b)
			}
			b = append(b, v...)
		case float64:
			b = append(b, kindNumber)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
		case bool:
			if v {
				b = append(b, kindTrue)
			} else {
				b = append(b, kindFalse)
			}
		case nil:
			b = append(b, kindNull)
		default:
			b = append(b, kindOther)
			b = binary.AppendUvarint(b, uint64(len(more)))
			if a, ok := v.([]any); ok {
				a = slices.Clone(a)
				for i, e := range a {
					if e, ok := e.(string); ok {
						a[i] = strings.Clone(e)
					}
				}
				v = a
			}
			more = append(more, v)
		}
	}
	if !subKept {
		subAt = len(b)
		b = append(b, sub...)
	}
	// b is never written again, so the string can share it. (Were n miscounted,
	// append would have moved b, and enc would still be right, only larger.)
	enc := unsafe.String(unsafe.SliceData(b), len(b))
	set := ClaimSet{enc: enc}
	if others > 0 {
		set.more = &more
	}
	return set, enc[subAt : subAt+len(sub)]
}

func nameLen(k string) int {
	if _, ok := commonIndex(k); ok {
		return 1
	}
	return 1 + uvarintLen(uint64(len(k))) + len(k)
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// find returns the named claim.
func (s ClaimSet) find(name string) (rawClaim, bool) {
	r := s.reader()
	for {
		c, ok := r.next()
		if !ok {
			return c, false
		}
		switch cmp := strings.Compare(c.name, name); {
		case cmp == 0:
			return c, true
		case cmp > 0:
			return c, false // sorted: it is not further on
		}
	}
}

// Get returns the value of the named claim, as decoded JSON (string, float64,
// bool, nil, []any or map[string]any). Arrays and objects are shared: do not
// modify them.
func (s ClaimSet) Get(name string) (any, bool) {
	c, ok := s.find(name)
	if !ok {
		return nil, false
	}
	return s.value(c)
}

// String returns the named claim when it is a string. Unlike Get, it does not
// allocate.
func (s ClaimSet) String(name string) (string, bool) {
	c, ok := s.find(name)
	if !ok || c.kind != kindString {
		return "", false
	}
	return c.text, true
}

// Len is the number of claims.
func (s ClaimSet) Len() int {
	n, r := 0, s.reader()
	for _, ok := r.next(); ok; _, ok = r.next() {
		n++
	}
	return n
}

// All yields the claims in name order.
func (s ClaimSet) All() iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		r := s.reader()
		for c, ok := r.next(); ok; c, ok = r.next() {
			v, ok := s.value(c)
			if ok && !yield(c.name, v) {
				return
			}
		}
	}
}

// Map returns the claims as a new map (for CEL conditions).
func (s ClaimSet) Map() map[string]any {
	m := make(map[string]any, s.Len())
	for k, v := range s.All() {
		m[k] = v
	}
	return m
}

// commonNames are the member names Better Auth puts in every token's header and
// claims, sorted.
var commonNames = []string{
	"alg", "aud", "createdAt", "email", "emailVerified", "exp", "iat", "id", "image", "iss", "jti",
	"kid", "name", "nbf", "role", "sub", "typ", "updatedAt", "uuid",
}

// intern returns the common name equal to name, if there is one, so that decoded
// maps share its text; else name.
func intern(name string) string {
	if i, ok := commonIndex(name); ok {
		return commonNames[i]
	}
	return name
}

func commonIndex(name string) (int, bool) { return slices.BinarySearch(commonNames, name) }

// size estimates the memory a cached entry with this set holds, for the cache's
// byte budget: the entry itself, the encoding (and half a size class, on average,
// of what rounding its allocation up adds) and the decoded arrays and objects,
// element by element: a signed token with a kept array of thousands must be
// charged for them. Heap profiles of 100k cached Better Auth tokens agree within a
// few percent.
func (s ClaimSet) size() int {
	n := entryOverhead + len(s.enc) + 8
	if s.more != nil {
		n += 24 + 16*len(*s.more)
		for _, v := range *s.more {
			n += decodedSize(v)
		}
	}
	return n
}

// decodedSize estimates the heap a decoded JSON value holds beyond the interface
// that refers to it: a boxed string's header and text, a slice's elements, a map's
// entries with their share of its buckets. Other types (a caller's own) count as
// a boxed word.
func decodedSize(v any) int {
	switch v := v.(type) {
	case string:
		return 16 + len(v)
	case []any:
		n := 24 + 16*len(v)
		for _, e := range v {
			n += decodedSize(e)
		}
		return n
	case map[string]any:
		n := 48
		for k, e := range v {
			n += 48 + len(k) + decodedSize(e)
		}
		return n
	case nil, bool:
		return 0
	}
	return 8
}

// ClaimsOf builds the Claims of a credential verified elsewhere (Better Auth's
// get-session): values become the claim set, with sub as the subject, and expiry
// its Expiry (to the second).
func ClaimsOf(issuer string, values map[string]any, expiry time.Time) *Claims {
	sub, _ := values["sub"].(string)
	set, sub := newClaimSet(values, nil, sub)
	return &Claims{Issuer: issuer, Subject: sub, exp: unixSeconds(expiry), Values: set}
}
