package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/keyset"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// bomb is a key source that panics for the kid "boom", standing in for any bug a
// request could reach.
type bomb struct{ keyset.Static }

func (b bomb) Lookup(ctx context.Context, kid string) (*keyset.Key, error) {
	if kid == "boom" {
		var s []int
		s[len(kid)]++ // a real runtime panic (index out of range), not a test-only one
	}
	return b.Static.Lookup(ctx, kid)
}

// served runs the real gRPC server (with the recovery interceptor, as server.Run
// wires it) and HTTP check for cfg, and returns a gRPC client and the HTTP base URL.
func served(t *testing.T, cfg authz.Config) (authv3.AuthorizationClient, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(mustGRPC(t, cfg), grpc.ChainUnaryInterceptor(authz.Recover(cfg.Engine)))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hs := httptest.NewServer(mustHTTP(t, cfg))
	t.Cleanup(hs.Close)
	return authv3.NewAuthorizationClient(conn), hs.URL
}

func TestPanicIsDeniedAndServingContinues(t *testing.T) {
	good := tokentest.NewKey(jwa.EdDSA, "k1")
	boom := tokentest.NewKey(jwa.EdDSA, "boom")
	keys, _, err := keyset.Parse(tokentest.JWKS(good))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	c, base := served(t, authz.Config{Engine: enginetest.WithKeys(t, doc, bomb{keys}, now, m, nil)})
	claims := tokentest.Claims(iss, "userA", uuidA, now)
	boomTok, goodTok := boom.Sign(claims, nil), good.Sign(claims, nil)
	own := "/api/" + uuidA + "/tasks"

	for i := 0; i < 3; i++ {
		resp, err := c.Check(context.Background(), checkRequest("GET", own, map[string]string{"authorization": "Bearer " + boomTok}))
		if err != nil {
			t.Fatalf("panicking check: %v", err)
		}
		if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Fatalf("panicking check answered %v, want a 403 deny", resp)
		}
		if md := resp.GetDynamicMetadata().AsMap(); md["reason"] != "internal_error" {
			t.Fatalf("metadata %v", md)
		}
		hr := do(t, "GET", base+authz.EnvoyPrefix+own, map[string]string{"Authorization": "Bearer " + boomTok})
		if hr.StatusCode != 403 {
			t.Fatalf("panicking HTTP check: %d", hr.StatusCode)
		}
	}
	// The process still serves, and decides correctly.
	resp, err := c.Check(context.Background(), checkRequest("GET", own, map[string]string{"authorization": "Bearer " + goodTok}))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("check after the panics: %v %v", resp, err)
	}
	if hr := do(t, "GET", base+authz.EnvoyPrefix+own, map[string]string{"Authorization": "Bearer " + goodTok}); hr.StatusCode != 200 {
		t.Fatalf("HTTP check after the panics: %d", hr.StatusCode)
	}
	if g, h := testutil.ToFloat64(m.PanicCounter("grpc")), testutil.ToFloat64(m.PanicCounter("http")); g != 3 || h != 3 {
		t.Fatalf("extauthz_panics_total grpc %v http %v, want 3 and 3", g, h)
	}
}

// TestMalformedEd25519KeyCannotCrash serves a JWKS whose second key has a 31-byte x
// (crypto/ed25519 panics on it), then sends a token naming that key: it is denied,
// and the process keeps serving the good key's tokens.
func TestMalformedEd25519KeyCannotCrash(t *testing.T) {
	good := tokentest.NewKey(jwa.EdDSA, "k1")
	bad := tokentest.NewKey(jwa.EdDSA, "short")
	jwk := bad.PublicJWK()
	x, _ := base64.RawURLEncoding.DecodeString(jwk["x"].(string))
	jwk["x"] = base64.RawURLEncoding.EncodeToString(x[:31])
	body, _ := json.Marshal(map[string]any{"keys": []any{good.PublicJWK(), jwk}})
	srv := tokentest.NewJWKSServer(t, body)
	m := metrics.New(prometheus.NewRegistry())
	cache, err := jwkscache.New(jwkscache.Config{URL: srv.URL, Name: iss, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	cache.Start(context.Background())
	defer cache.Stop()
	<-cache.Ready()
	if v := testutil.ToFloat64(m.JWKSSkippedGauge(iss)); v != 1 {
		t.Fatalf("extauthz_jwks_skipped_keys = %v, want 1", v)
	}
	c, _ := served(t, authz.Config{Engine: enginetest.WithKeys(t, doc, cache, now, m, nil)})
	claims := tokentest.Claims(iss, "userA", uuidA, now)
	own := "/api/" + uuidA + "/tasks"
	// Unsigned: the header names the bad key, the signature is junk.
	forged := tokentest.Forge(map[string]any{"alg": "EdDSA", "kid": "short"}, claims, make([]byte, 64))
	resp, err := c.Check(context.Background(), checkRequest("GET", own, map[string]string{"authorization": "Bearer " + forged}))
	if err != nil || resp.GetDeniedResponse() == nil || resp.GetDynamicMetadata().AsMap()["reason"] != "unknown_kid" {
		t.Fatalf("token naming the malformed key: %v %v", resp, err)
	}
	resp, err = c.Check(context.Background(), checkRequest("GET", own, map[string]string{"authorization": "Bearer " + good.Sign(claims, nil)}))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("good token afterwards: %v %v", resp, err)
	}
	if n := testutil.ToFloat64(m.PanicCounter("grpc")); n != 0 {
		t.Fatalf("%v panics: the bad key reached crypto/ed25519", n)
	}
}

func TestGRPCRemovesVariantsAndOverrides(t *testing.T) {
	c, key := grpcClient(t)
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	resp, err := c.Check(context.Background(), checkRequest("POST", "/api/"+uuidA+"/tasks", map[string]string{
		"authorization":          "Bearer " + tok,
		"x_user_uuid":            uuidB,
		"x-user_email":           "b@example.test",
		"x_unrelated":            "kept",
		"x-http-method-override": "DELETE",
	}))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("check: %v %v", resp, err)
	}
	rm := resp.GetOkResponse().GetHeadersToRemove()
	for _, h := range []string{"x_user_uuid", "x-user_email", "x-http-method-override", "x-http-method", "x-method-override"} {
		if !slices.Contains(rm, h) {
			t.Errorf("%s not in headers_to_remove %v", h, rm)
		}
	}
	if slices.Contains(rm, "x_unrelated") {
		t.Errorf("an unrelated header is removed: %v", rm)
	}
}

func TestGRPCRefusesLowerCaseMethodAndBadHost(t *testing.T) {
	c, key := grpcClient(t)
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	for _, tc := range []struct{ method, host string }{{"delete", "api.example.com"}, {"GET", "api.example.com:1:2"}, {"GET", ""}} {
		req := checkRequest(tc.method, "/api/"+uuidA+"/tasks", map[string]string{"authorization": "Bearer " + tok})
		req.Attributes.Request.Http.Host = tc.host
		resp, err := c.Check(context.Background(), req)
		if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
			t.Errorf("%q %q: %v %v, want a 400", tc.method, tc.host, resp, err)
		}
		if strings.Contains(resp.GetDeniedResponse().GetBody(), "host") {
			t.Errorf("deny body names the reason: %q", resp.GetDeniedResponse().GetBody())
		}
	}
}

func mustGRPC(t testing.TB, cfg authz.Config) *authz.GRPC {
	t.Helper()
	g, err := authz.NewGRPC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustHTTP(t testing.TB, cfg authz.Config) *authz.HTTP {
	t.Helper()
	h, err := authz.NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFrontDoorsNeedAnEngine(t *testing.T) {
	if _, err := authz.NewGRPC(authz.Config{}); err == nil {
		t.Error("NewGRPC without an engine")
	}
	if _, err := authz.NewHTTP(authz.Config{}); err == nil {
		t.Error("NewHTTP without an engine")
	}
}
