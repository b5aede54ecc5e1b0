package authz

import (
	"net/http"
	"strings"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// Path prefixes of the HTTP check endpoint, one per proxy dialect. Each dialect
// reads the original request from its own place, and only from there, so a client
// cannot steer one dialect with headers meant for another.
const (
	// EnvoyPrefix is Envoy HTTP ext_authz's path_prefix: the original path follows it.
	EnvoyPrefix = "/envoy"
	// NginxPath takes X-Original-URI, X-Original-Method and X-Original-Host, all
	// required: a request without one is denied, never judged by this request's own.
	NginxPath = "/nginx"
	// TraefikPath takes X-Forwarded-Uri, X-Forwarded-Method and X-Forwarded-Host.
	TraefikPath = "/traefik"
)

// dialect is the proxy an HTTP check came from, chosen by its path prefix.
type dialect uint8

const (
	dialectNone dialect = iota // a panic before the dialect was known
	dialectEnvoy
	dialectNginx
	dialectTraefik
)

// HTTP serves the HTTP check endpoint.
type HTTP struct {
	engine *engine.Engine
	realm  string
}

// NewHTTP returns the HTTP front door.
func NewHTTP(cfg Config) (*HTTP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &HTTP{engine: cfg.Engine, realm: cfg.Realm}, nil
}

// ServeHTTP dispatches by dialect. It deliberately does not use http.ServeMux,
// which would clean or redirect the very paths (.., //) we must judge as sent.
//
// nginx and Traefik can only overwrite the identity headers by name, not remove
// other request headers, so for them a request carrying a method-override header
// or an underscore variant of an identity header is denied (CannotRemove). Envoy
// removes what x-envoy-auth-headers-to-remove lists.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req *engine.Request
	defer func() {
		if v := recover(); v != nil {
			d := h.engine.Panicked(r.Context(), metrics.TransportHTTP, req, v)
			h.write(w, dialectNone, d)
		}
	}()
	uri := r.RequestURI
	req = &engine.Request{
		Authorization:   r.Header.Values("Authorization"),
		Origin:          r.Header.Get("Origin"),
		Cookies:         r.Header.Values("Cookie"),
		APIKey:          r.Header.Get("X-Api-Key"),
		Accept:          r.Header.Get("Accept"),
		ClientAddress:   r.Header.Get("X-Forwarded-For"),
		Referer:         r.Header.Get("Referer"),
		PreflightMethod: r.Header.Get("Access-Control-Request-Method"),
		RequestID:       r.Header.Get("X-Request-Id"),
	}
	for name := range r.Header {
		if strings.ContainsAny(name, "_.") {
			req.UnderscoreHeaders = append(req.UnderscoreHeaders, name)
		}
	}
	for _, name := range policy.MethodOverrideHeaders {
		if _, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
			req.MethodOverride = true
		}
	}
	var d dialect
	switch {
	case strings.HasPrefix(uri, EnvoyPrefix+"/"):
		d = dialectEnvoy
		req.Method, req.Path, req.Host = r.Method, uri[len(EnvoyPrefix):], r.Host
	case pathIs(uri, NginxPath):
		d = dialectNginx
		req.Method = r.Header.Get("X-Original-Method")
		req.Path = r.Header.Get("X-Original-URI")
		req.Host = r.Header.Get("X-Original-Host")
		req.CannotRemove = true
	case pathIs(uri, TraefikPath):
		d = dialectTraefik
		req.Method = r.Header.Get("X-Forwarded-Method")
		req.Path = r.Header.Get("X-Forwarded-Uri")
		req.Host = r.Header.Get("X-Forwarded-Host")
		req.CannotRemove = true
	default:
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if tracing.Enabled() {
		ctx = tracing.FromHTTP(ctx, r.Header)
	}
	h.write(w, d, h.engine.Check(ctx, metrics.TransportHTTP, req))
}

func (h *HTTP) write(w http.ResponseWriter, dialect dialect, d engine.Decision) {
	hdr := w.Header()
	if d.Allow {
		for _, hv := range d.SetHeaders {
			hdr.Set(hv.Name, hv.Value)
		}
		if dialect == dialectEnvoy {
			// Envoy's HTTP ext_authz removes the listed headers from the upstream
			// request. It forwards us only its allowed_headers, so we cannot see
			// which underscore spellings the request carried: list them all.
			remove := make([]string, 0, len(d.RemoveHeaders)+len(d.RemoveSpellings))
			remove = append(append(remove, d.RemoveHeaders...), d.RemoveSpellings...)
			hdr.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(remove, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	for _, hv := range denyHeaders(d, h.realm) {
		hdr.Set(hv.Name, hv.Value)
	}
	status := d.Status
	switch {
	case dialect == dialectNginx && status == http.StatusBadRequest:
		// auth_request treats anything but 2xx, 401 and 403 as an internal error (500).
		status = http.StatusForbidden
	case dialect == dialectNginx && status == http.StatusFound:
		// ...so a sign-in redirect is a 401 with Location, for error_page 401 to follow.
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(denyBody(d)))
}

func pathIs(uri, p string) bool {
	return uri == p || strings.HasPrefix(uri, p+"?")
}
