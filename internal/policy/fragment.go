package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/url"
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
	// Fallback is the fragment's last version that was in force, kept when Doc
	// is rejected (nil: none).
	Fallback []byte
}

// FragmentStatus is what became of one fragment.
type FragmentStatus struct {
	ID string `json:"id"`
	// Hash identifies the fragment's document (as Hash does a policy's).
	Hash string `json:"hash"`
	// Applied: this version is in force. InForce is the hash of the version in
	// force: Hash when applied, the last good version's when this one was
	// rejected ("" when none is).
	Applied bool   `json:"applied"`
	InForce string `json:"inForce,omitempty"`
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

// Limits on what one fragment may bring: every request scans the rules in
// order, and every replica compiles every fragment, so one team must not be able
// to slow or starve the others.
const (
	MaxFragmentRules   = 200
	MaxFragmentIssuers = 4
	// A fragment issuer's JWKS is fetched by every replica: no faster than this.
	minFragmentRefresh  = time.Minute
	minFragmentCooldown = 10 * time.Second
)

// Namespace is the namespace part of a fragment ID ("shop" of "shop/policy").
func (f Fragment) Namespace() string {
	ns, _, _ := strings.Cut(f.ID, "/")
	return ns
}

// compileDelegation validates Config.Fragments: canonical host patterns per
// namespace, and no host delegated to two namespaces.
func compileDelegation(in map[string][]string) (map[string][]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(in))
	type owned struct{ pattern, ns string }
	var all []owned
	for _, ns := range slices.Sorted(maps.Keys(in)) {
		if ns == "" || strings.ContainsAny(ns, "/ ") {
			return nil, fmt.Errorf("fragments: %q is not a namespace", ns)
		}
		if len(in[ns]) == 0 {
			return nil, fmt.Errorf("fragments.%s: list the hosts the namespace may claim", ns)
		}
		for _, h := range in[ns] {
			c, err := compileHostPattern(h)
			if err != nil {
				return nil, fmt.Errorf("fragments.%s: %w", ns, err)
			}
			for _, o := range all {
				if o.ns != ns && hostsOverlap([]string{c}, []string{o.pattern}) {
					return nil, fmt.Errorf("fragments.%s: %q overlaps %q, delegated to %s: a host belongs to one namespace", ns, h, o.pattern, o.ns)
				}
			}
			all = append(all, owned{c, ns})
			out[ns] = append(out[ns], c)
		}
	}
	return out, nil
}

// Compose compiles the base policy document with every fragment that is valid,
// claims only hosts the base delegates to its namespace (Config.Fragments), and
// claims none that an earlier fragment of that namespace owns; the others are
// rejected, each with its reason, and never affect the rest. A rejected fragment
// with a Fallback (its last good version) keeps that version in force. Compose
// fails only when base does. With no fragments it is Load(base).
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
	baseWarnings, delegated := p.Warnings, p.Delegated
	baseRules := map[string]bool{}
	for _, r := range p.Rules {
		baseRules[r.Name] = true
	}
	issuerOwner := map[string]string{}
	for _, is := range p.Issuers {
		issuerOwner[is.Issuer] = "the base policy"
	}
	frags = slices.Clone(frags)
	slices.SortFunc(frags, func(a, b Fragment) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	env := &composeEnv{base: bc, delegated: delegated, baseRules: baseRules, issuerOwner: issuerOwner}
	statuses := make([]FragmentStatus, len(frags))
	var parts []*accepted
	for i, f := range frags {
		st := &statuses[i]
		st.ID, st.Hash = f.ID, Hash(f.Doc)
		a, err := env.check(f, f.Doc, f.Err)
		if err != nil {
			st.Error = err.Error()
			if f.Fallback == nil {
				continue
			}
			// The last good version stays, as a rejected base policy's does.
			if a, err = env.check(f, f.Fallback, nil); err != nil {
				continue
			}
			st.InForce = Hash(f.Fallback)
		} else {
			st.Applied, st.InForce = true, st.Hash
		}
		st.Hosts, st.Rules = a.hosts, len(a.frag.Rules)
		env.take(a)
		parts = append(parts, a)
	}
	p, parts, err = mergeFragments(bc, parts, statuses)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	sum.Write(base)
	for _, a := range parts {
		fmt.Fprintf(sum, "\x00%s\x00%s", a.id, Hash([]byte(a.doc)))
	}
	p.Hash = Hash(base)
	if len(parts) > 0 {
		p.Hash = hex.EncodeToString(sum.Sum(nil)[:8])
	}
	p.Warnings = baseWarnings
	for _, a := range parts {
		for i := range p.Issuers {
			if slices.Contains(a.issuers, p.Issuers[i].Issuer) {
				p.Issuers[i].Hosts, p.Issuers[i].Fragment = a.hosts, a.id
				p.ScopedIssuers = true
			}
		}
		for _, w := range a.warnings {
			p.Warnings = append(p.Warnings, "fragment "+a.id+": "+w)
		}
	}
	p.Fragments = statuses
	return p, nil
}

// accepted is a fragment that passed its checks, rewritten for merging.
type accepted struct {
	id, doc  string
	frag     *FragmentConfig
	hosts    []string
	issuers  []string
	warnings []string
}

// composeEnv is what each fragment is checked against: the base, and the hosts
// and issuers the fragments before it took.
type composeEnv struct {
	base        *Config
	delegated   map[string][]string
	baseRules   map[string]bool
	issuerOwner map[string]string
	claims      []claim
}

func (e *composeEnv) take(a *accepted) {
	for _, h := range a.hosts {
		e.claims = append(e.claims, claim{h, a.id})
	}
	for _, is := range a.issuers {
		e.issuerOwner[is] = "fragment " + a.id
	}
}

// mergeFragments compiles the base with the accepted fragments. Each compiled
// on its own, so a failure here is a conflict between them: then they are added
// one at a time, and only those that do not compile with the ones before are
// rejected.
func mergeFragments(bc *Config, parts []*accepted, statuses []FragmentStatus) (*Policy, []*accepted, error) {
	merged := func(ps []*accepted) *Config {
		m := *bc
		m.Rules, m.Issuers = slices.Clone(bc.Rules), slices.Clone(bc.Issuers)
		for _, a := range ps {
			m.Issuers = append(m.Issuers, a.frag.Issuers...)
			m.Rules = append(m.Rules, a.frag.Rules...)
		}
		return &m
	}
	if p, err := compile(merged(parts), false); err == nil {
		return p, parts, nil
	}
	var kept []*accepted
	for _, a := range parts {
		if _, err := compile(merged(append(kept, a)), false); err != nil {
			for i := range statuses {
				if statuses[i].ID == a.id {
					statuses[i].Applied, statuses[i].InForce, statuses[i].Hosts, statuses[i].Rules = false, "", nil, 0
					statuses[i].Error = "conflicts with the fragments before it: " + err.Error()
				}
			}
			continue
		}
		kept = append(kept, a)
	}
	p, err := compile(merged(kept), false)
	return p, kept, err
}

// check validates one version of a fragment against the base and the fragments
// accepted before it, and returns it rewritten for merging: rules named
// ID/rule and bound to the fragment's hosts.
func (e *composeEnv) check(f Fragment, doc []byte, readErr error) (*accepted, error) {
	if readErr != nil {
		return nil, readErr
	}
	fc, err := ParseFragment(doc)
	if err != nil {
		return nil, err
	}
	ns := f.Namespace()
	allowed := e.delegated[ns]
	if len(allowed) == 0 {
		return nil, fmt.Errorf("hosts: the base policy delegates no host to namespace %q (its fragments: section)", ns)
	}
	var hosts []string
	for _, h := range fc.Hosts {
		c, err := compileHostPattern(h)
		if err != nil {
			return nil, fmt.Errorf("hosts: %w", err)
		}
		if !slices.ContainsFunc(allowed, func(d string) bool { return hostCovers(d, c) }) {
			return nil, fmt.Errorf("hosts: %q is not delegated to namespace %q", h, ns)
		}
		for _, cl := range e.claims {
			if hostsOverlap([]string{c}, []string{cl.pattern}) {
				return nil, fmt.Errorf("hosts: %q is already owned by fragment %s (%q)", h, cl.owner, cl.pattern)
			}
		}
		if !slices.Contains(hosts, c) {
			hosts = append(hosts, c)
		}
	}
	if len(fc.Rules) > MaxFragmentRules {
		return nil, fmt.Errorf("rules: %d rules, more than the %d a fragment may bring", len(fc.Rules), MaxFragmentRules)
	}
	if len(fc.Issuers) > MaxFragmentIssuers {
		return nil, fmt.Errorf("issuers: %d issuers, more than the %d a fragment may bring", len(fc.Issuers), MaxFragmentIssuers)
	}
	var issuers []string
	for i, ic := range fc.Issuers {
		if err := checkFragmentIssuer(ic); err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		is, err := resolveIssuer(ic)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		if err := checkFragmentJWKS(is.JWKSURL); err != nil {
			return nil, fmt.Errorf("issuers[%d]: jwksURL: %w", i, err)
		}
		if owner, ok := e.issuerOwner[is.Issuer]; ok || slices.Contains(issuers, is.Issuer) {
			if !ok {
				owner = "this fragment"
			}
			return nil, fmt.Errorf("issuers[%d]: issuer %q is already listed by %s", i, is.Issuer, owner)
		}
		issuers = append(issuers, is.Issuer)
	}
	out := &FragmentConfig{Hosts: hosts, Issuers: fc.Issuers, Rules: make([]RuleConfig, len(fc.Rules))}
	for i, rc := range fc.Rules {
		if rc.Name == "" {
			return nil, fmt.Errorf("rules[%d]: name: required", i)
		}
		for _, h := range rc.Hosts {
			c, err := compileHostPattern(h)
			if err != nil {
				return nil, fmt.Errorf("rules[%d] %q: hosts: %w", i, rc.Name, err)
			}
			if !slices.ContainsFunc(hosts, func(claimed string) bool { return hostCovers(claimed, c) }) {
				return nil, fmt.Errorf("rules[%d] %q: hosts: %q is not a host the fragment claims", i, rc.Name, h)
			}
		}
		if len(rc.Hosts) == 0 {
			rc.Hosts = hosts
		}
		rc.Name = f.ID + "/" + rc.Name
		if e.baseRules[rc.Name] {
			return nil, fmt.Errorf("rules[%d]: name: %q is the name of a rule of the base policy", i, rc.Name)
		}
		out.Rules[i] = rc
	}
	// Compiled alone (with the base's issuers, which its rules may rely on), so
	// that errors name the fragment's own rules and fields, and lint looks at its
	// rules only.
	alone := Config{Issuers: append(slices.Clone(e.base.Issuers), fc.Issuers...), Rules: out.Rules, Identity: e.base.Identity, Default: e.base.Default}
	cp, err := Compile(&alone)
	if err != nil {
		return nil, err
	}
	return &accepted{id: f.ID, doc: string(doc), frag: out, hosts: hosts, issuers: issuers, warnings: cp.Warnings}, nil
}

// checkFragmentIssuer refuses what a team's issuer must not have: it is trusted
// on the team's hosts only, and fetched by every replica.
func checkFragmentIssuer(ic IssuerConfig) error {
	switch {
	case ic.Revocation != nil:
		return errors.New("revocation: a fragment's issuer cannot have a revocation feed (its secret lives in extauthz's pod); put the issuer in the base policy")
	case ic.AllowInsecureJWKS:
		return errors.New("allowInsecureJWKS: a fragment's issuer serves its JWKS over https")
	case ic.RefreshInterval != 0 && ic.RefreshInterval < minFragmentRefresh:
		return fmt.Errorf("refreshInterval: at least %s for a fragment's issuer", minFragmentRefresh)
	case ic.RefetchCooldown != 0 && ic.RefetchCooldown < minFragmentCooldown:
		return fmt.Errorf("refetchCooldown: at least %s for a fragment's issuer", minFragmentCooldown)
	}
	for _, c := range ic.Credentials {
		if c != CredentialJWT {
			return fmt.Errorf("credentials: a fragment's issuer accepts jwt only (%s is not tied to one host)", c)
		}
	}
	return nil
}

// checkFragmentJWKS keeps a team's JWKS URL off extauthz's own network position:
// https, and no loopback, private, link-local or unspecified address literal (a
// name that resolves to one is for the NetworkPolicy's egress rules to stop).
func checkFragmentJWKS(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" {
		return errors.New("a fragment's issuer serves its JWKS over https")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("%s is this machine", host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsLinkLocalMulticast() || ip.IsMulticast() {
			return fmt.Errorf("%s is not a public address", ip)
		}
	}
	return nil
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
