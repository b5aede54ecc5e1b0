// Package authz holds the front doors: the Envoy ext_authz v3 gRPC service and the
// HTTP check endpoint for Envoy (HTTP mode), nginx auth_request and Traefik
// forwardAuth. They translate a proxy's question into an engine.Request and the
// engine's Decision back into the proxy's dialect; they decide nothing themselves.
package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/tracing"
)

// DefaultRealm is the realm in WWW-Authenticate challenges.
const DefaultRealm = "extauthz"

// Config configures a front door.
type Config struct {
	// Engine decides; required.
	Engine *engine.Engine
	// Realm for WWW-Authenticate; DefaultRealm when empty.
	Realm string
}

func (c Config) withDefaults() (Config, error) {
	if c.Engine == nil {
		return c, errors.New("authz: Engine is required")
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	return c, nil
}

// GRPC implements Envoy's envoy.service.auth.v3.Authorization service.
type GRPC struct {
	authv3.UnimplementedAuthorizationServer
	engine *engine.Engine
	realm  string
}

// NewGRPC returns the gRPC front door.
func NewGRPC(cfg Config) (*GRPC, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &GRPC{engine: cfg.Engine, realm: cfg.Realm}, nil
}

// Check answers one ext_authz CheckRequest. It never returns an error: every
// problem, including a request we cannot read, becomes a deny.
func (g *GRPC) Check(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return g.response(g.decide(ctx, in)), nil
}

// check is Check for a server built by NewServer: an allow with a memoised
// engine.Answer goes out as the bytes encoded for the first request that had it.
func (g *GRPC) check(ctx context.Context, in *authv3.CheckRequest) any {
	d := g.decide(ctx, in)
	if d.Answer == nil {
		return g.response(d)
	}
	if w, ok := d.Answer.Wire().(*encoded); ok {
		return w
	}
	resp := g.response(d)
	b, err := proto.Marshal(resp)
	if err != nil {
		return resp // the codec will report it
	}
	// One BufferSlice for every request: SliceBuffer's Free does nothing, and grpc
	// only reads it.
	w := &encoded{mem.BufferSlice{mem.SliceBuffer(b)}}
	d.Answer.SetWire(w)
	return w
}

func (g *GRPC) decide(ctx context.Context, in *authv3.CheckRequest) engine.Decision {
	h := in.GetAttributes().GetRequest().GetHttp()
	req := &engine.Request{
		Method:        h.GetMethod(),
		Path:          h.GetPath(),
		Host:          h.GetHost(),
		ClientAddress: in.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	if hm := h.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		// header_map (encode_raw_headers) keeps repeated headers apart.
		for _, kv := range hm.GetHeaders() {
			v := kv.GetValue()
			if v == "" && len(kv.GetRawValue()) > 0 {
				v = string(kv.GetRawValue())
			}
			setHeader(req, strings.ToLower(kv.GetKey()), v)
		}
	} else {
		for k, v := range h.GetHeaders() {
			setHeader(req, k, v)
		}
	}
	if tracing.Enabled() {
		ctx = tracing.FromCheck(ctx, checkHeaders(h))
	}
	return g.engine.Check(ctx, metrics.TransportGRPC, req)
}

// streamWorkersPerCPU sizes NewServer's worker pool. Checks mostly compute, but
// one that waits (a get-session call, an unknown kid's JWKS fetch) holds a worker.
const streamWorkersPerCPU = 8

// NewServer returns a gRPC server that serves g as Envoy's Authorization service,
// with opts. It pairs the service with the codec that sends a memoised answer's
// bytes as they are, which grpc-go's generated registration cannot do: its
// handler must return a *CheckResponse, which would be encoded again per request.
//
// It also serves streams from a pool of long-lived workers: grpc-go otherwise
// starts a goroutine per stream, and growing each new goroutine's stack to the
// depth of a check (signature verification is deep) was a fifth of a warm check's
// CPU. A stream that finds every worker busy gets a goroutine of its own, as before.
func NewServer(g *GRPC, opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append(slices.Clip(opts),
		grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(grpcproto.Name)}),
		grpc.NumStreamWorkers(uint32(streamWorkersPerCPU*runtime.GOMAXPROCS(0))))...)
	desc := authv3.Authorization_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}}
	s.RegisterService(&desc, g)
	return s
}

// checkHandler is the generated Check handler, calling check instead of Check.
func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	g := srv.(*GRPC)
	if interceptor == nil {
		return g.check(ctx, in), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return g.check(ctx, req.(*authv3.CheckRequest)), nil
	})
}

// encoded is a CheckResponse already in its wire form.
type encoded struct{ data mem.BufferSlice }

// codec is grpc-go's proto codec, except that an encoded response is sent as is.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		return e.data, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return c.proto.Name() }

// checkHeaders is the checked request's headers as one map, whichever of the two
// encodings Envoy used (only when tracing needs them).
func checkHeaders(h *authv3.AttributeContext_HttpRequest) map[string]string {
	hm := h.GetHeaderMap()
	if hm == nil || len(hm.GetHeaders()) == 0 {
		return h.GetHeaders()
	}
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, kv := range hm.GetHeaders() {
		v := kv.GetValue()
		if v == "" {
			v = string(kv.GetRawValue())
		}
		out[strings.ToLower(kv.GetKey())] = v
	}
	return out
}

// Recover is the gRPC server's unary interceptor that turns a panic into an answer:
// for Check, a deny (internal_error, PERMISSION_DENIED, 403) built by
// engine.Panicked; for any other method, codes.Internal. grpc-go does not recover
// handler panics, so without it one request could end the process.
func Recover(e *engine.Engine) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, in any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			d := e.Panicked(ctx, metrics.TransportGRPC, nil, v)
			if info.FullMethod == authv3.Authorization_Check_FullMethodName {
				resp, err = (&GRPC{}).response(d), nil
				return
			}
			resp, err = nil, grpcstatus.Error(codes.Internal, "internal error")
		}()
		return handler(ctx, in)
	}
}

func setHeader(req *engine.Request, key, v string) {
	switch key {
	case "authorization":
		req.Authorization = append(req.Authorization, v)
	case "origin":
		req.Origin = v
	case "cookie":
		req.Cookies = append(req.Cookies, v)
	case "x-api-key":
		req.APIKey = v
	case "accept":
		req.Accept = v
	case "referer":
		req.Referer = v
	case "access-control-request-method":
		req.PreflightMethod = v
	case "x-request-id":
		req.RequestID = v
	case "x-http-method-override", "x-http-method", "x-method-override":
		req.MethodOverride = true
	default:
		if strings.ContainsAny(key, "_.") {
			req.UnderscoreHeaders = append(req.UnderscoreHeaders, key)
		}
	}
}

func (g *GRPC) response(d engine.Decision) *authv3.CheckResponse {
	if d.Allow {
		ok := &authv3.OkHttpResponse{HeadersToRemove: d.RemoveHeaders, Headers: headerOptions(d.SetHeaders)}
		return &authv3.CheckResponse{
			Status:          &status.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: dynamicMetadata(d),
		}
	}
	code := codes.PermissionDenied
	if d.Status == http.StatusUnauthorized {
		code = codes.Unauthenticated
	}
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Body:   denyBody(d),
	}
	denied.Headers = headerOptions(denyHeaders(d, g.realm))
	return &authv3.CheckResponse{
		Status:          &status.Status{Code: int32(code)},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: dynamicMetadata(d),
	}
}

// headerOptions are hs as headers Envoy overwrites or adds. The messages are
// allocated in two arrays rather than two apiece: a new token's answer is
// built once per check.
func headerOptions(hs []engine.Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.Name, h.Value
		opts[i].Header, opts[i].AppendAction = &vals[i], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

// dynamicMetadata reaches Envoy's access logs and later filters. It carries the
// decision's rule and reason, and on allow the subject and uuid.
func dynamicMetadata(d engine.Decision) *structpb.Struct {
	f := map[string]*structpb.Value{"rule": structpb.NewStringValue(d.Rule)}
	if d.Reason != "" {
		f["reason"] = structpb.NewStringValue(string(d.Reason))
	}
	if d.Allow && d.Claims != nil {
		if v, ok := engine.HeaderValue(claim(d, "sub")); ok {
			f["sub"] = structpb.NewStringValue(v)
		}
		if v, ok := engine.HeaderValue(claim(d, "uuid")); ok {
			f["uuid"] = structpb.NewStringValue(v)
		}
	}
	return &structpb.Struct{Fields: f}
}

func claim(d engine.Decision, name string) any {
	v, _ := d.Claims.Values.Get(name)
	return v
}

// denyBody is deliberately generic: the reason code stays in our logs and metrics.
func denyBody(d engine.Decision) string {
	switch d.Status {
	case http.StatusUnauthorized:
		return `{"error":"invalid_token"}`
	case http.StatusBadRequest:
		return `{"error":"bad_request"}`
	default:
		return `{"error":"forbidden"}`
	}
}

func denyHeaders(d engine.Decision, realm string) []engine.Header {
	hs := []engine.Header{{Name: "content-type", Value: "application/json"}}
	if d.Location != "" {
		hs = append(hs, engine.Header{Name: "location", Value: d.Location})
	}
	if d.Status == http.StatusUnauthorized {
		hs = append(hs, engine.Header{Name: "www-authenticate", Value: challenge(d, realm)})
	}
	return hs
}

// challenge follows RFC 6750 §3: no error code when the request had no token,
// invalid_token when it had one that failed.
func challenge(d engine.Decision, realm string) string {
	q, _ := json.Marshal(realm) // a quoted string with escapes
	if d.TokenPresent && d.Reason != reason.TokenMissing {
		return fmt.Sprintf(`Bearer realm=%s, error="invalid_token"`, q)
	}
	return fmt.Sprintf(`Bearer realm=%s`, q)
}
