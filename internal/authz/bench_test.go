package authz_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// alwaysAllow is the baseline: an ext_authz server that does nothing.
type alwaysAllow struct {
	authv3.UnimplementedAuthorizationServer
}

func (alwaysAllow) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

// benchGRPC measures one Check round trip over a loopback gRPC connection, client
// and server in this process, so it counts both sides' CPU as a proxy would see it.
func benchGRPC(b *testing.B, srv authv3.AuthorizationServer, tokens []string) {
	benchGRPCWith(b, srv, tokens, nil)
}

// benchGRPCHeaders is benchGRPC for one token with more request headers.
func benchGRPCHeaders(b *testing.B, srv authv3.AuthorizationServer, tok string, extra map[string]string) {
	benchGRPCWith(b, srv, []string{tok}, extra)
}

func benchGRPCWith(b *testing.B, srv authv3.AuthorizationServer, tokens []string, extra map[string]string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var s *grpc.Server
	if g, ok := srv.(*authz.GRPC); ok {
		s = authz.NewServer(g) // as extauthz serves it
	} else {
		s = grpc.NewServer()
		authv3.RegisterAuthorizationServer(s, srv)
	}
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	reqs := make([]*authv3.CheckRequest, len(tokens))
	for i, tok := range tokens {
		h := map[string]string{"authorization": "Bearer " + tok, "x-request-id": "r"}
		for k, v := range extra {
			h[k] = v
		}
		reqs[i] = checkRequest("GET", "/api/"+uuidA+"/tasks", h)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := c.Check(context.Background(), reqs[i%len(reqs)])
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("%v %v", resp, err)
		}
		i++
	}
}

// The trivial server gets the very request the warm one does.
func BenchmarkGRPCTrivial(b *testing.B) {
	_, key := enginetest.New(b, doc, now, nil, nil)
	benchGRPC(b, alwaysAllow{}, []string{key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)})
}

// shaped answers every check with one prebuilt response, encoded per call.
type shaped struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (s shaped) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.resp, nil
}

// TrivialShaped is the trivial server answering with extauthz's very allow for
// the token (headers to set and remove, dynamic metadata): what is left between it
// and Warm is the cost of deciding.
func BenchmarkGRPCTrivialShaped(b *testing.B) {
	e, key := enginetest.New(b, doc, now, nil, nil)
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	resp, _ := mustGRPC(b, authz.Config{Engine: e}).Check(context.Background(),
		checkRequest("GET", "/api/"+uuidA+"/tasks", map[string]string{"authorization": "Bearer " + tok}))
	if resp.GetOkResponse() == nil {
		b.Fatal(resp)
	}
	benchGRPC(b, shaped{resp: resp}, []string{tok})
}

func BenchmarkGRPCWarm(b *testing.B) {
	e, key := enginetest.New(b, doc, now, nil, token.NewCache(token.CacheConfig{}))
	benchGRPC(b, mustGRPC(b, authz.Config{Engine: e}), []string{key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)})
}

func BenchmarkGRPCCold(b *testing.B) {
	e, key := enginetest.New(b, doc, now, nil, token.NewCache(token.CacheConfig{MaxEntries: 128}))
	toks := make([]string, 8192)
	for i := range toks {
		toks[i] = key.Sign(tokentest.Claims(iss, fmt.Sprintf("user-%d", i), uuidA, now), nil)
	}
	benchGRPC(b, mustGRPC(b, authz.Config{Engine: e}), toks)
}

// BenchmarkGRPCWarmTracing: the warm check with tracing off, and on with a sampler
// that samples nothing (the request carries Envoy's traceparent, so the context
// is extracted and a non-recording span started). The two alternate in one run.
func BenchmarkGRPCWarmTracing(b *testing.B) {
	e, key := enginetest.New(b, doc, now, nil, token.NewCache(token.CacheConfig{}))
	srv := mustGRPC(b, authz.Config{Engine: e})
	tok := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	defer tracing.Install(nil)
	for _, v := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"off", nil}, {"sampler-off", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))}} {
		b.Run(v.name, func(b *testing.B) {
			tracing.Install(v.tp)
			benchGRPCHeaders(b, srv, tok, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
		})
	}
}
