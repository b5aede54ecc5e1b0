package token

import "math"

// rawClaim is one claim as claimReader reads it: text is a string's text or a
// number's 8 bytes; index is a kindOther value's place in more.
type rawClaim struct {
	name  string
	kind  byte
	text  string
	index int
}

// claimReader reads a ClaimSet's claims in order.
type claimReader struct {
	enc  string
	at   int
	left uint64
}

func (s ClaimSet) reader() claimReader {
	r := claimReader{enc: s.enc}
	if s.enc != "" {
		r.left, _ = r.uvarint()
	}
	return r
}

// next returns the next claim; false at the end. An encoding it cannot read, which
// only a bug in newClaimSet could produce, ends the set rather than being misread
// or indexed out of range. A missing claim is not always a deny (banned, for one),
// so it is the tests, not this, that hold the writer and reader to each other.
func (r *claimReader) next() (c rawClaim, ok bool) {
	if r.left == 0 || r.at >= len(r.enc) {
		return c, false
	}
	r.left--
	if b := r.enc[r.at]; b != nameLiteral {
		if int(b) >= len(commonNames) {
			return r.broken()
		}
		c.name = commonNames[b]
		r.at++
	} else {
		r.at++
		if c.name, ok = r.text(); !ok {
			return r.broken()
		}
	}
	if r.at >= len(r.enc) {
		return r.broken()
	}
	c.kind = r.enc[r.at]
	r.at++
	switch c.kind {
	case kindString:
		if c.text, ok = r.text(); !ok {
			return r.broken()
		}
	case kindNumber:
		if len(r.enc)-r.at < 8 {
			return r.broken()
		}
		c.text = r.enc[r.at : r.at+8]
		r.at += 8
	case kindTrue, kindFalse, kindNull:
	case kindOther:
		i, ok := r.uvarint()
		if !ok || i > math.MaxInt32 {
			return r.broken()
		}
		c.index = int(i)
	default:
		return r.broken()
	}
	return c, true
}

func (r *claimReader) broken() (rawClaim, bool) {
	r.left = 0
	return rawClaim{}, false
}

func (r *claimReader) uvarint() (uint64, bool) {
	var x uint64
	for shift := uint(0); shift < 64 && r.at < len(r.enc); shift += 7 {
		b := r.enc[r.at]
		r.at++
		x |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return x, true
		}
	}
	return 0, false
}

func (r *claimReader) text() (string, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.enc)-r.at) {
		return "", false
	}
	s := r.enc[r.at : r.at+int(n)]
	r.at += int(n)
	return s, true
}

// value is c's value as decoded JSON (string, float64, bool, nil, []any or
// map[string]any).
func (s ClaimSet) value(c rawClaim) (any, bool) {
	switch c.kind {
	case kindString:
		return c.text, true
	case kindNumber:
		var bits uint64
		for i := range 8 {
			bits = bits<<8 | uint64(c.text[i])
		}
		return math.Float64frombits(bits), true
	case kindTrue:
		return true, true
	case kindFalse:
		return false, true
	case kindNull:
		return nil, true
	case kindOther:
		if s.more == nil || c.index >= len(*s.more) {
			return nil, false
		}
		return (*s.more)[c.index], true
	}
	return nil, false
}
