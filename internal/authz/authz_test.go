package authz_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const (
	iss   = "https://auth.example.com"
	uuidA = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
	uuidB = "71c0e039-6d8d-5394-b9e9-ac347e061fd0"
	doc   = `
issuers: [{betterAuthURL: https://auth.example.com}]
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email, x-user-role: role }
rules:
  - name: health
    paths: ["/healthz"]
    public: true
  - name: own-tasks
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
cors: { allowPreflight: true }
`
)

var now = time.Unix(1_800_000_000, 0)

// grpcClient serves both front doors (realm "tasks") on an engine with a generated
// key and returns a real gRPC client and that key.
func grpcClient(t *testing.T) (authv3.AuthorizationClient, *tokentest.Key) {
	t.Helper()
	e, key := enginetest.New(t, doc, now, nil, nil)
	c, _ := served(t, authz.Config{Engine: e, Realm: "tasks"})
	return c, key
}

func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.example.com", Headers: headers},
	}}}
}

func TestGRPCAllowSetsAndStripsIdentityHeaders(t *testing.T) {
	c, key := grpcClient(t)
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	resp, err := c.Check(context.Background(), checkRequest("GET", "/api/"+uuidA+"/tasks?limit=5", map[string]string{
		"authorization": "Bearer " + tok,
		"x-user-uuid":   uuidB, // forged by the client
		"x-user-role":   "admin",
		"x-request-id":  "req-1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("status %v", resp.GetStatus())
	}
	ok := resp.GetOkResponse()
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	want := map[string]string{"x-user-id": "userA", "x-user-uuid": uuidA, "x-user-email": "userA@example.test"}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("header %s = %q, want %q", k, set[k], v)
		}
	}
	// The token has no role claim: the client's x-user-role must be removed, and so
	// must every method-override header.
	if !slices.Equal(ok.GetHeadersToRemove(), []string{"x-user-role", "x-http-method-override", "x-http-method", "x-method-override"}) {
		t.Errorf("headers_to_remove = %v", ok.GetHeadersToRemove())
	}
	md := resp.GetDynamicMetadata().AsMap()
	if md["sub"] != "userA" || md["uuid"] != uuidA || md["rule"] != "own-tasks" {
		t.Errorf("dynamic metadata = %v", md)
	}
}

func TestGRPCDenies(t *testing.T) {
	c, key := grpcClient(t)
	good := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	cases := []struct {
		name      string
		path      string
		headers   map[string]string
		code      codes.Code
		status    int
		challenge string
		body      string
	}{
		{"no token", "/api/" + uuidA + "/tasks", nil, codes.Unauthenticated, 401, `Bearer realm="tasks"`, `{"error":"invalid_token"}`},
		{"garbage token", "/api/" + uuidA + "/tasks", map[string]string{"authorization": "Bearer x.y.z"}, codes.Unauthenticated, 401, `Bearer realm="tasks", error="invalid_token"`, `{"error":"invalid_token"}`},
		{"someone else's tasks", "/api/" + uuidB + "/tasks", map[string]string{"authorization": "Bearer " + good}, codes.PermissionDenied, 403, "", `{"error":"forbidden"}`},
		{"traversal", "/api/" + uuidA + "/../" + uuidB + "/tasks", map[string]string{"authorization": "Bearer " + good}, codes.PermissionDenied, 400, "", `{"error":"bad_request"}`},
		{"no rule", "/other", map[string]string{"authorization": "Bearer " + good}, codes.PermissionDenied, 403, "", `{"error":"forbidden"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Check(context.Background(), checkRequest("GET", tc.path, tc.headers))
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if codes.Code(resp.GetStatus().GetCode()) != tc.code || int(d.GetStatus().GetCode()) != tc.status || d.GetBody() != tc.body {
				t.Fatalf("got %v %d %q", resp.GetStatus(), d.GetStatus().GetCode(), d.GetBody())
			}
			hs := map[string]string{}
			for _, h := range d.GetHeaders() {
				hs[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if hs["www-authenticate"] != tc.challenge || hs["content-type"] != "application/json" {
				t.Fatalf("headers = %v", hs)
			}
			if resp.GetOkResponse() != nil {
				t.Fatal("deny carries an ok response")
			}
			if strings.Contains(d.GetBody(), "owner") || strings.Contains(d.GetBody(), "kid") {
				t.Fatal("deny body leaks the reason")
			}
		})
	}
}

func TestGRPCHeaderMapKeepsRepeatedAuthorization(t *testing.T) {
	c, key := grpcClient(t)
	good := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	req := checkRequest("GET", "/api/"+uuidA+"/tasks", nil)
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "authorization", Value: "Bearer " + good},
		{Key: "Authorization", RawValue: []byte("Bearer " + good)},
	}}
	resp, err := c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("two Authorization headers: %v", resp)
	}
	req.Attributes.Request.Http.HeaderMap.Headers = req.Attributes.Request.Http.HeaderMap.Headers[:1]
	if resp, _ = c.Check(context.Background(), req); resp.GetOkResponse() == nil {
		t.Fatalf("one Authorization header in header_map: %v", resp)
	}
}

func TestGRPCEmptyRequestIsDenied(t *testing.T) {
	c, _ := grpcClient(t)
	resp, err := c.Check(context.Background(), &authv3.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
		t.Fatalf("empty request: %v", resp)
	}
}

// httpCheck serves the HTTP front door and returns its base URL.
func httpCheck(t *testing.T) (string, *tokentest.Key) {
	t.Helper()
	e, key := enginetest.New(t, doc, now, nil, nil)
	srv := httptest.NewServer(mustHTTP(t, authz.Config{Engine: e}))
	t.Cleanup(srv.Close)
	return srv.URL, key
}

func do(t *testing.T, method, url string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestHTTPDialects(t *testing.T) {
	base, key := httpCheck(t)
	good := "Bearer " + key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	own, other := "/api/"+uuidA+"/tasks", "/api/"+uuidB+"/tasks"
	cases := []struct {
		dialect, method, url string
		headers              map[string]string
		status               int
	}{
		{"envoy", "GET", base + authz.EnvoyPrefix + own + "?x=1", map[string]string{"Authorization": good, "X-User-Role": "admin"}, 200},
		{"envoy", "DELETE", base + authz.EnvoyPrefix + other, map[string]string{"Authorization": good}, 403},
		{"envoy", "GET", base + authz.EnvoyPrefix + own, nil, 401},
		{"nginx", "GET", base + authz.NginxPath, nginx(good, own+"?q", "POST", "api.example.com"), 200},
		{"nginx", "GET", base + authz.NginxPath, nginx(good, other, "GET", "api.example.com"), 403},
		{"nginx", "GET", base + authz.NginxPath, nginx("", own, "GET", "api.example.com"), 401},
		// auth_request turns anything but 2xx/401/403 into a 500: a rejected path is a 403 there.
		{"nginx", "GET", base + authz.NginxPath, nginx(good, "/api/"+uuidA+"/%2e%2e/"+uuidB+"/tasks", "GET", "api.example.com"), 403},
		// Misconfigured: each X-Original-* is required, never taken from the check request itself.
		{"nginx", "GET", base + authz.NginxPath, nginx(good, "", "GET", "api.example.com"), 403},
		{"nginx", "GET", base + authz.NginxPath, nginx(good, own, "", "api.example.com"), 403},
		{"nginx", "GET", base + authz.NginxPath, nginx(good, own, "GET", ""), 403},
		// nginx cannot remove these from the request it forwards, so they are refused.
		{"nginx", "GET", base + authz.NginxPath, with(nginx(good, own, "POST", "api.example.com"), "X-HTTP-Method-Override", "DELETE"), 403},
		{"nginx", "GET", base + authz.NginxPath, with(nginx(good, own, "GET", "api.example.com"), "X_User_Uuid", uuidB), 403},
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Forwarded-Uri": own, "X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com"}, 200},
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Forwarded-Uri": other, "X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com"}, 403},
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Forwarded-Uri": own, "X-Forwarded-Method": "GET"}, 400}, // no host
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Forwarded-Uri": "/api/" + uuidA + "/..%2F" + uuidB + "/tasks", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com"}, 400},
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Forwarded-Uri": own, "X-Forwarded-Method": "POST", "X-Forwarded-Host": "api.example.com", "X-Http-Method": "DELETE"}, 400},
		{"envoy", "POST", base + authz.EnvoyPrefix + own, map[string]string{"Authorization": good, "X-HTTP-Method-Override": "DELETE"}, 200}, // removed by Envoy instead
		// A dialect reads only its own headers: nginx's X-Original-URI means nothing to Traefik.
		{"traefik", "GET", base + authz.TraefikPath, map[string]string{"Authorization": good, "X-Original-URI": own}, 400},
		{"none", "GET", base + "/", map[string]string{"Authorization": good}, 404},
	}
	for _, tc := range cases {
		t.Run(tc.dialect+" "+tc.url[len(base):], func(t *testing.T) {
			resp := do(t, tc.method, tc.url, tc.headers)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			switch tc.status {
			case 200:
				if resp.Header.Get("X-User-Uuid") != uuidA || resp.Header.Get("X-User-Id") != "userA" {
					t.Fatalf("identity headers %v", resp.Header)
				}
				// Envoy's HTTP mode forwards us only allowed_headers, so every
				// underscore spelling is listed, seen or not.
				remove := strings.Split(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), ",")
				for _, name := range []string{"x-user-role", "x-http-method-override", "x-http-method", "x-method-override",
					"x_user_uuid", "x-user_uuid", "x_user-id", "x_http_method_override", "x-http_method-override", "x_method-override"} {
					if tc.dialect == "envoy" && !slices.Contains(remove, name) {
						t.Fatalf("headers to remove %q lack %q", remove, name)
					}
				}
				if tc.dialect == "envoy" && (slices.Contains(remove, "x-user-uuid") || slices.Contains(remove, "x-user-id")) {
					t.Fatalf("headers to remove %q include a header being set", remove)
				}
			case 401:
				if resp.Header.Get("Www-Authenticate") != `Bearer realm="extauthz"` {
					t.Fatalf("challenge %q", resp.Header.Get("Www-Authenticate"))
				}
			}
		})
	}
}

func nginx(bearer, uri, method, host string) map[string]string {
	h := map[string]string{"X-Original-URI": uri, "X-Original-Method": method, "X-Original-Host": host}
	if bearer != "" {
		h["Authorization"] = bearer
	}
	for k, v := range h {
		if v == "" {
			delete(h, k)
		}
	}
	return h
}

func with(h map[string]string, k, v string) map[string]string {
	h[k] = v
	return h
}

// TestHTTPRawDotSegments sends paths that Go's client and ServeMux would clean, over
// a raw connection, to prove the check sees them exactly as a proxy forwards them.
func TestHTTPRawDotSegments(t *testing.T) {
	base, key := httpCheck(t)
	good := "Bearer " + key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	for _, p := range []string{
		"/api/" + uuidA + "/../" + uuidB + "/tasks",
		"/api/" + uuidA + "/%2e%2e/" + uuidB + "/tasks",
		"/api//" + uuidB + "/tasks",
		"/api/" + uuidA + "/tasks/..;/..;/" + uuidB + "/tasks",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s%s HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: %s\r\nConnection: close\r\n\r\n", authz.EnvoyPrefix, p, good)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 || resp.StatusCode >= 500 {
			t.Errorf("%s: status %d", p, resp.StatusCode)
		}
	}
}

func TestHTTPPreflightAndPublic(t *testing.T) {
	base, _ := httpCheck(t)
	resp := do(t, "OPTIONS", base+authz.EnvoyPrefix+"/api/"+uuidA+"/tasks", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"})
	if resp.StatusCode != 200 {
		t.Fatalf("preflight: %d", resp.StatusCode)
	}
	resp = do(t, "GET", base+authz.EnvoyPrefix+"/healthz", map[string]string{"X-User-Uuid": uuidB})
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"), "x-user-uuid") {
		t.Fatalf("public: %d %v", resp.StatusCode, resp.Header)
	}
}
