package policy

import (
	"fmt"
	"slices"
	"strings"
)

// lint finds policies that are legal but easy to get wrong. An owner rule protects
// only the requests it matches; whatever it does not match (another method, host,
// or a path spelling it does not cover) falls through to later rules and the
// default. So an owner rule next to `default: authenticated`, or followed by a rule
// whose paths overlap its own, likely lets another user's data through; so does an
// earlier rule that takes some of its requests first.
// maxWarnings bounds what lint reports: the overlap checks compare rules pairwise,
// and a policy (or a team's fragment) of many similar rules must not make
// megabytes of warnings.
const maxWarnings = 50

func lint(p *Policy) []string {
	out := lintAll(p)
	if len(out) > maxWarnings {
		out = append(out[:maxWarnings], fmt.Sprintf("lint stopped after %d warnings", maxWarnings))
	}
	return out
}

func lintAll(p *Policy) []string {
	var out []string
	for i, r := range p.Rules {
		if r.Owner == nil {
			if r.when != nil && p.Default == DefaultAuthenticated {
				out = append(out, fmt.Sprintf(
					"rule %q has a condition, but default: authenticated allows any valid token on the requests it does not match (other methods, hosts or path spellings); prefer default: deny",
					r.Name))
			}
			continue
		}
		if p.Default == DefaultAuthenticated {
			out = append(out, fmt.Sprintf(
				"rule %q checks ownership, but default: authenticated allows any valid token on the requests it does not match (other methods or hosts); prefer default: deny",
				r.Name))
		}
		for _, earlier := range p.Rules[:i] {
			if len(out) > maxWarnings {
				return out
			}
			if earlier.Owner == nil && methodsOverlap(earlier, r) && overlaps(earlier, r) {
				out = append(out, fmt.Sprintf(
					"rule %q checks ownership, but the earlier rule %q matches some of the same requests: first match wins, so those never reach the ownership check",
					r.Name, earlier.Name))
			}
		}
		for _, later := range p.Rules[i+1:] {
			if len(out) > maxWarnings {
				return out
			}
			if overlaps(r, later) {
				out = append(out, fmt.Sprintf(
					"rule %q checks ownership, but the later rule %q matches some of the same paths: requests %q does not match (other methods or hosts) fall through to %q",
					r.Name, later.Name, r.Name, later.Name))
			}
		}
	}
	return out
}

func methodsOverlap(a, b *Rule) bool {
	if len(a.methods) == 0 || len(b.methods) == 0 {
		return true
	}
	for _, m := range a.methods {
		if slices.Contains(b.methods, m) {
			return true
		}
	}
	return false
}

// overlaps reports whether some request path could match a path of both rules on a
// host both accept. Methods are left out on purpose: a later rule for other methods
// is exactly the fall-through lint warns about.
func overlaps(a, b *Rule) bool {
	if !hostsOverlap(a.hosts, b.hosts) {
		return false
	}
	for _, ta := range a.paths {
		for _, tb := range b.paths {
			if templatesOverlap(ta, tb) {
				return true
			}
		}
	}
	return false
}

func hostsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x == y || hostMatches([]string{x}, y) || hostMatches([]string{y}, x) {
				return true
			}
			xs, xw := strings.CutPrefix(x, "*")
			ys, yw := strings.CutPrefix(y, "*")
			if xw && yw && (strings.HasSuffix(xs, ys) || strings.HasSuffix(ys, xs)) {
				return true
			}
		}
	}
	return false
}

// templatesOverlap reports whether one path matches both templates.
func templatesOverlap(a, b *Template) bool {
	fold := !a.caseSensitive || !b.caseSensitive
	x, y := a.segs, b.segs
	for {
		switch {
		case len(x) == 0 && len(y) == 0:
			return true
		case len(x) > 0 && x[0].kind == segRest, len(y) > 0 && y[0].kind == segRest:
			return true
		case len(x) == 0 || len(y) == 0:
			return false
		}
		if x[0].kind == segLiteral && y[0].kind == segLiteral {
			if x[0].text != y[0].text && !(fold && asciiEqualFold(x[0].text, y[0].text)) {
				return false
			}
		}
		// A literal, {param} or * all match some non-empty segment in common.
		x, y = x[1:], y[1:]
	}
}

// Methods returns the methods the rule applies to (HEAD added where GET is listed);
// nil means every method.
func (r *Rule) Methods() []string { return slices.Clone(r.methods) }
