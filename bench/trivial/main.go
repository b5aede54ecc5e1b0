// Command trivial is the benchmark baseline: an Envoy ext_authz gRPC server that
// allows everything without looking at the request. Whatever extauthz costs on top of
// this is the cost of its checks; the rest is gRPC itself.
package main

import (
	"context"
	"flag"
	"log"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

type allow struct {
	authv3.UnimplementedAuthorizationServer
	full bool
}

func (a allow) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if !a.full {
		return &authv3.CheckResponse{
			Status:       &status.Status{},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		}, nil
	}
	// The shape of extauthz's allow: three identity headers and dynamic metadata, so
	// that the cost of answering can be told apart from the cost of deciding.
	ok := &authv3.OkHttpResponse{}
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
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, allow{full: *full})
	log.Fatal(s.Serve(l))
}
