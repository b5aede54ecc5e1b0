package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FragmentConfig is a team's piece of the policy, kept in its own namespace: the
// hosts it claims, and rules (and issuers) that apply to requests for those hosts
// only. The base policy still supplies the identity headers, the default, CORS
// and the leeway, and its rules are tried first.
type FragmentConfig struct {
	// Hosts the fragment owns: exact names or "*.suffix". No other fragment may
	// claim one of them (or an overlapping wildcard).
	Hosts []string `yaml:"hosts" jsonschema:"required,minItems=1"`
	// Issuers the fragment adds. Their tokens count only on the fragment's hosts,
	// and they accept Bearer JWTs only.
	Issuers []IssuerConfig `yaml:"issuers"`
	// Rules for the fragment's hosts. A rule without hosts gets all of the
	// fragment's; a rule with hosts may name only hosts the fragment claims.
	Rules []RuleConfig `yaml:"rules" jsonschema:"required,minItems=1"`
}

// Fragment is one fragment document and where it came from.
type Fragment struct {
	// ID names the fragment in rule names, logs, metrics and Events:
	// "namespace/name" for a ConfigMap. Its rules are named ID + "/" + rule.
	ID string
	// Created orders fragments: of two that claim the same host, the one created
	// first keeps it (then the lower ID), so every replica decides alike.
	Created time.Time
	Doc     []byte
	// Err, when set, says the fragment could not be read (a ConfigMap without the
	// key): it is rejected with that error.
	Err error
}

// FragmentStatus is what became of one fragment.
type FragmentStatus struct {
	ID string `json:"id"`
	// Hash identifies the fragment's document (as Hash does a policy's).
	Hash    string `json:"hash"`
	Applied bool   `json:"applied"`
	// Error says why it was rejected.
	Error string `json:"error,omitempty"`
	// Waiting: not composed yet, because no base policy is in force.
	Waiting bool     `json:"waiting,omitempty"`
	Hosts   []string `json:"hosts,omitempty"`
	Rules   int      `json:"rules"`
}

// ParseFragment decodes a fragment as strictly as Parse does a policy.
func ParseFragment(data []byte) (*FragmentConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f FragmentConfig
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("fragment is empty")
		}
		return nil, fmt.Errorf("fragment yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("fragment yaml: more than one document")
	}
	if len(f.Hosts) == 0 {
		return nil, errors.New("hosts: a fragment claims at least one host")
	}
	if len(f.Rules) == 0 {
		return nil, errors.New("rules: a fragment brings at least one rule")
	}
	return &f, nil
}

// claim is a host pattern and the fragment that owns it.
type claim struct{ pattern, owner string }

// Compose compiles the base policy document with every fragment that is valid
// and claims no host an earlier fragment owns; the others are rejected, each
// with its reason, and never affect the rest. It fails only when base does.
// With no fragments it is Load(base).
func Compose(base []byte, frags []Fragment) (*Policy, error) {
	bc, err := Parse(base)
	if err != nil {
		return nil, err
	}
	p, err := Compile(bc)
	if err != nil {
		return nil, err
	}
	p.Hash = Hash(base)
	if len(frags) == 0 {
		return p, nil
	}
	frags = slices.Clone(frags)
	slices.SortFunc(frags, func(a, b Fragment) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	issuerOwner := map[string]string{}
	for _, is := range p.Issuers {
		issuerOwner[is.Issuer] = "the base policy"
	}
	var claims []claim
	merged := *bc
	merged.Rules = slices.Clone(bc.Rules)
	merged.Issuers = slices.Clone(bc.Issuers)
	statuses := make([]FragmentStatus, len(frags))
	type accepted struct {
		hosts   []string
		issuers []string
	}
	taken := map[string]accepted{}
	for i, f := range frags {
		st := &statuses[i]
		st.ID, st.Hash = f.ID, Hash(f.Doc)
		fc, hosts, issuers, err := checkFragment(bc, f, claims, issuerOwner)
		if err != nil {
			st.Error = err.Error()
			continue
		}
		st.Applied, st.Hosts, st.Rules = true, hosts, len(fc.Rules)
		for _, h := range hosts {
			claims = append(claims, claim{h, f.ID})
		}
		for _, is := range issuers {
			issuerOwner[is] = "fragment " + f.ID
		}
		taken[f.ID] = accepted{hosts, issuers}
		merged.Issuers = append(merged.Issuers, fc.Issuers...)
		merged.Rules = append(merged.Rules, fc.Rules...)
	}
	if p, err = Compile(&merged); err != nil {
		// Each fragment compiled on its own, so this is a conflict between them
		// (two issuers with one cookie prefix, say): say so on every fragment
		// rather than guess which one is at fault, and keep the base.
		for i := range statuses {
			if statuses[i].Applied {
				statuses[i].Applied, statuses[i].Error = false, "fragments conflict: "+err.Error()
			}
		}
		if p, err = Compile(bc); err != nil {
			return nil, err
		}
		taken = nil
	}
	sum := sha256.New()
	sum.Write(base)
	for _, st := range statuses {
		if st.Applied {
			fmt.Fprintf(sum, "\x00%s\x00%s", st.ID, st.Hash)
		}
	}
	p.Hash = hex.EncodeToString(sum.Sum(nil)[:8])
	if len(taken) == 0 {
		p.Hash = Hash(base)
	}
	for i := range p.Issuers {
		for id, a := range taken {
			if slices.Contains(a.issuers, p.Issuers[i].Issuer) {
				p.Issuers[i].Hosts, p.Issuers[i].Fragment = a.hosts, id
				p.ScopedIssuers = true
			}
		}
	}
	p.Fragments = statuses
	return p, nil
}

// checkFragment validates one fragment against the base and the fragments
// accepted before it, and returns it rewritten for merging: rules named
// ID/rule and bound to the fragment's hosts. It also returns the canonical host
// claims and the issuers it adds.
func checkFragment(base *Config, f Fragment, claims []claim, issuerOwner map[string]string) (*FragmentConfig, []string, []string, error) {
	if f.Err != nil {
		return nil, nil, nil, f.Err
	}
	fc, err := ParseFragment(f.Doc)
	if err != nil {
		return nil, nil, nil, err
	}
	var hosts []string
	for _, h := range fc.Hosts {
		c, err := compileHostPattern(h)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("hosts: %w", err)
		}
		for _, cl := range claims {
			if hostsOverlap([]string{c}, []string{cl.pattern}) {
				return nil, nil, nil, fmt.Errorf("hosts: %q is already owned by fragment %s (%q)", h, cl.owner, cl.pattern)
			}
		}
		if !slices.Contains(hosts, c) {
			hosts = append(hosts, c)
		}
	}
	var issuers []string
	for i, ic := range fc.Issuers {
		if ic.Revocation != nil {
			return nil, nil, nil, fmt.Errorf("issuers[%d]: revocation: a fragment's issuer cannot have a revocation feed (its secret lives in extauthz's pod); put the issuer in the base policy", i)
		}
		for _, c := range ic.Credentials {
			if c != CredentialJWT {
				return nil, nil, nil, fmt.Errorf("issuers[%d]: credentials: a fragment's issuer accepts jwt only (%s is not tied to one host)", i, c)
			}
		}
		is, err := resolveIssuer(ic)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		if owner, ok := issuerOwner[is.Issuer]; ok || slices.Contains(issuers, is.Issuer) {
			if !ok {
				owner = "this fragment"
			}
			return nil, nil, nil, fmt.Errorf("issuers[%d]: issuer %q is already listed by %s", i, is.Issuer, owner)
		}
		issuers = append(issuers, is.Issuer)
	}
	out := &FragmentConfig{Hosts: hosts, Issuers: fc.Issuers, Rules: make([]RuleConfig, len(fc.Rules))}
	for i, rc := range fc.Rules {
		if rc.Name == "" {
			return nil, nil, nil, fmt.Errorf("rules[%d]: name: required", i)
		}
		for _, h := range rc.Hosts {
			c, err := compileHostPattern(h)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("rules[%d] %q: hosts: %w", i, rc.Name, err)
			}
			if !slices.ContainsFunc(hosts, func(claimed string) bool { return hostCovers(claimed, c) }) {
				return nil, nil, nil, fmt.Errorf("rules[%d] %q: hosts: %q is not a host the fragment claims", i, rc.Name, h)
			}
		}
		if len(rc.Hosts) == 0 {
			rc.Hosts = hosts
		}
		rc.Name = f.ID + "/" + rc.Name
		out.Rules[i] = rc
	}
	// Compiled alone (with the base's issuers, which its rules may rely on), so
	// that errors name the fragment's own rules and fields.
	alone := Config{Issuers: append(slices.Clone(base.Issuers), fc.Issuers...), Rules: out.Rules, Identity: base.Identity}
	if _, err := Compile(&alone); err != nil {
		return nil, nil, nil, err
	}
	return out, hosts, issuers, nil
}

// hostCovers reports whether every host pattern b matches, a matches too.
func hostCovers(a, b string) bool {
	if a == b {
		return true
	}
	suffix, ok := strings.CutPrefix(a, "*")
	if !ok {
		return false
	}
	// "*.example.com" covers "x.example.com" and "*.x.example.com", not "example.com".
	name := strings.TrimPrefix(b, "*")
	return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
}
