// Command trivial is the benchmark baseline: an Envoy ext_authz gRPC server that
// allows everything without looking at the request (or, with -ed25519, after
// verifying the token's signature and nothing else). Whatever extauthz costs on top of
// this is the cost of its checks; the rest is gRPC itself.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"log"
	"net"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

type allow struct {
	authv3.UnimplementedAuthorizationServer
	full bool
	// verify, when set, checks the Bearer token's Ed25519 signature (the standard
	// library, nothing else): the least a check of a new token can cost.
	verify ed25519.PublicKey
}

func (a allow) Check(_ context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if a.verify != nil {
		tok := strings.TrimPrefix(in.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"], "Bearer ")
		i := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if i < 0 || err != nil || !ed25519.Verify(a.verify, []byte(tok[:i]), sig) {
			// An error, not a deny, so that the load run fails.
			return nil, grpcstatus.Error(codes.PermissionDenied, "signature does not verify")
		}
	}
	if !a.full {
		return &authv3.CheckResponse{
			Status:       &status.Status{},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		}, nil
	}
	// The shape of extauthz's allow: three identity headers, the method-override
	// headers to remove and dynamic metadata, so
	// that the cost of answering can be told apart from the cost of deciding.
	ok := &authv3.OkHttpResponse{HeadersToRemove: []string{"x-http-method-override", "x-http-method", "x-method-override"}}
	for _, h := range [][2]string{
		{"x-user-email", "user-1@example.test"}, {"x-user-id", "MHn2ZDIDAlMj9iJP9wagqTpBAidQEDWe"},
		{"x-user-uuid", "6639900d-cfe5-59ec-bd5c-e0e68598457e"},
	} {
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h[0], Value: h[1]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	md, _ := structpb.NewStruct(map[string]any{
		"rule": "own-tasks", "sub": "MHn2ZDIDAlMj9iJP9wagqTpBAidQEDWe", "uuid": "6639900d-cfe5-59ec-bd5c-e0e68598457e",
	})
	return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}, DynamicMetadata: md}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9101", "listen address")
	full := flag.Bool("full-response", false, "answer with headers and metadata shaped like extauthz's allow")
	verify := flag.String("ed25519", "", "verify each Bearer token's signature with this Ed25519 public key (base64url), and deny when it fails")
	flag.Parse()
	var pub ed25519.PublicKey
	if *verify != "" {
		b, err := base64.RawURLEncoding.DecodeString(*verify)
		if err != nil || len(b) != ed25519.PublicKeySize {
			log.Fatalf("-ed25519: not a base64url Ed25519 public key")
		}
		pub = b
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, allow{full: *full, verify: pub})
	log.Fatal(s.Serve(l))
}
