package decisions

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
)

// check refuses request headers a case cannot mean: the host and the method and
// path have fields of their own, and the dialects' forwarding headers are the
// proxies' (a case would otherwise be decided for another host, silently).
func (r Request) check() error {
	for name := range r.Headers {
		lower := strings.ToLower(name)
		switch {
		case lower == "host" || strings.HasPrefix(lower, ":"):
			return fmt.Errorf("headers.%s: give the host as request.host (and the method and path as request.method and request.path)", name)
		case strings.HasPrefix(lower, "x-forwarded-") && lower != "x-forwarded-for", strings.HasPrefix(lower, "x-original-"):
			return fmt.Errorf("headers.%s: the proxy sets it; give request.host, request.method and request.path", name)
		}
	}
	return nil
}

// check refuses a token described two ways: only one of them would be sent.
func (t *Token) check() error {
	var kinds []string
	if t.Raw != "" {
		kinds = append(kinds, "raw")
	}
	if t.Authorization != "" {
		kinds = append(kinds, "authorization")
	}
	if t.Oversize {
		kinds = append(kinds, "oversize")
	}
	if t.Header != nil {
		kinds = append(kinds, "header")
	}
	if t.Cookie != nil {
		kinds = append(kinds, "cookie")
	}
	signed := len(t.Claims) > 0 || len(t.Omit) > 0 || t.Key != ""
	switch {
	case len(kinds) > 1:
		return fmt.Errorf("%s: give one of them", strings.Join(kinds, ", "))
	case len(kinds) == 1 && kinds[0] != "header" && kinds[0] != "cookie" && signed:
		return fmt.Errorf("%s is sent as it is: claims, omit and key would be ignored", kinds[0])
	case len(kinds) == 1 && kinds[0] == "header" && t.Key != "":
		return errors.New("header leaves the signature garbage: key would be ignored")
	case len(kinds) == 1 && kinds[0] == "cookie" && t.Key != "":
		return errors.New("cookie is signed with the table's key: key would be ignored")
	}
	return nil
}

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
		if strings.ContainsAny(name, "_.") {
			req.UnderscoreHeaders = append(req.UnderscoreHeaders, name)
		}
	}
	slices.Sort(req.UnderscoreHeaders) // map order must not change the decision's header order
	return req, nil
}

// check compares a decision with what was wanted, one problem per difference.
func (w Want) check(d engine.Decision) []Problem {
	var out []Problem
	add := func(field, got, want, detail string) {
		out = append(out, Problem{Field: field, Got: got, Want: want, Detail: detail})
	}
	got := verdict(d.Allow)
	if got != w.Decision {
		add("decision", got, w.Decision, string(d.Reason)+": "+d.Detail)
	}
	if w.Status != 0 && d.Status != w.Status {
		add("status", strconv.Itoa(d.Status), strconv.Itoa(w.Status), "")
	}
	if w.Reason != "" && string(d.Reason) != w.Reason {
		add("reason", orNone(string(d.Reason)), w.Reason, d.Detail)
	}
	if w.Location != "" && d.Location != w.Location {
		add("location", strconv.Quote(d.Location), strconv.Quote(w.Location), "")
	}
	if w.Rule != "" && d.Rule != w.Rule {
		add("rule", d.Rule, w.Rule, "")
	}
	set := map[string]string{}
	for _, h := range d.SetHeaders {
		set[h.Name] = h.Value
	}
	for _, name := range slices.Sorted(maps.Keys(w.SetHeaders)) {
		want := w.SetHeaders[name]
		if v, ok := set[name]; !ok {
			add("header "+name, "not set", strconv.Quote(want), "")
		} else if v != want {
			add("header "+name, strconv.Quote(v), strconv.Quote(want), "")
		}
	}
	for _, name := range w.NotSet {
		if v, ok := set[name]; ok {
			add("header "+name, strconv.Quote(v), "not set", "")
		}
	}
	for _, name := range w.RemoveHeaders {
		if !slices.Contains(d.RemoveHeaders, name) {
			add("removed header "+name, "kept", "removed", "removed: "+strings.Join(d.RemoveHeaders, ","))
		}
	}
	for _, ws := range w.Shadow {
		i := slices.IndexFunc(d.Shadow, func(s engine.ShadowDecision) bool { return s.Rule == ws.Rule })
		if i < 0 {
			add("shadow "+ws.Rule, "no match", ws.Decision+" "+ws.Reason, "")
			continue
		}
		s := d.Shadow[i]
		g := verdict(s.Allow)
		if s.Unknown {
			g = "unknown"
		}
		if g != ws.Decision || string(s.Reason) != ws.Reason {
			add("shadow "+ws.Rule, strings.TrimSpace(g+" "+string(s.Reason)), strings.TrimSpace(ws.Decision+" "+ws.Reason), s.Detail)
		}
	}
	if w.NoShadow && len(d.Shadow) > 0 {
		add("shadow", d.Shadow[0].Rule+" matched", "no shadow rule", "")
	}
	return out
}

func verdict(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
