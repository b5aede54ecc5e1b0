package decisions

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

// engineRequest builds what a front door would hand the engine for r.
func (r Request) engineRequest() (*engine.Request, error) {
	req := &engine.Request{Method: r.Method, Host: "localhost", Path: r.Path}
	if r.Host != nil {
		req.Host = *r.Host
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	switch r.Proxy {
	case "", "envoy":
	case "nginx", "traefik":
		req.CannotRemove = true
	default:
		return nil, fmt.Errorf("request.proxy %q is not envoy, nginx or traefik", r.Proxy)
	}
	for name, v := range r.Headers {
		lower := strings.ToLower(name)
		switch {
		case lower == "authorization":
			return nil, fmt.Errorf("request.headers: give the credential as token, not Authorization")
		case lower == "origin":
			req.Origin = v
		case lower == "referer":
			req.Referer = v
		case lower == "cookie":
			req.Cookies = append(req.Cookies, v)
		case lower == "x-api-key":
			req.APIKey = v
		case lower == "accept":
			req.Accept = v
		case lower == "access-control-request-method":
			req.PreflightMethod = v
		case lower == "x-request-id":
			req.RequestID = v
		case slices.Contains(policy.MethodOverrideHeaders, lower):
			req.MethodOverride = true
		}
		if strings.Contains(name, "_") {
			req.UnderscoreHeaders = append(req.UnderscoreHeaders, name)
		}
	}
	slices.Sort(req.UnderscoreHeaders) // map order must not change the decision's header order
	return req, nil
}

// check compares a decision with what was wanted, one problem per difference.
func (w Want) check(d engine.Decision) []string {
	var out []string
	got := "deny"
	if d.Allow {
		got = "allow"
	}
	if got != w.Decision {
		out = append(out, fmt.Sprintf("decision %s, want %s (reason %q: %s)", got, w.Decision, d.Reason, d.Detail))
	}
	if w.Status != 0 && d.Status != w.Status {
		out = append(out, fmt.Sprintf("status %d, want %d", d.Status, w.Status))
	}
	if w.Reason != "" && string(d.Reason) != w.Reason {
		out = append(out, fmt.Sprintf("reason %q, want %q (%s)", d.Reason, w.Reason, d.Detail))
	}
	if w.Location != "" && d.Location != w.Location {
		out = append(out, fmt.Sprintf("location %q, want %q", d.Location, w.Location))
	}
	if w.Rule != "" && d.Rule != w.Rule {
		out = append(out, fmt.Sprintf("rule %q, want %q", d.Rule, w.Rule))
	}
	set := map[string]string{}
	for _, h := range d.SetHeaders {
		set[h.Name] = h.Value
	}
	for name, want := range w.SetHeaders {
		if v, ok := set[name]; !ok || v != want {
			out = append(out, fmt.Sprintf("header %s = %q (set: %v), want %q", name, v, ok, want))
		}
	}
	for _, name := range w.NotSet {
		if v, ok := set[name]; ok {
			out = append(out, fmt.Sprintf("header %s set to %q, want it not set", name, v))
		}
	}
	for _, name := range w.RemoveHeaders {
		if !slices.Contains(d.RemoveHeaders, name) {
			out = append(out, fmt.Sprintf("header %s not removed (removed: %v)", name, d.RemoveHeaders))
		}
	}
	return out
}
