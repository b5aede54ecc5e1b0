// Package tracing sets up OpenTelemetry traces from the standard OTEL_* environment
// variables, and continues the trace a proxy sends with a check: W3C traceparent
// and the B3 headers Envoy's tracers emit.
//
// Tracing is off unless OTEL_TRACES_EXPORTER=otlp or an OTEL_EXPORTER_OTLP_*
// endpoint is set; off, every function here is a cheap no-op.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
)

// Name is the instrumentation scope of extauthz's own spans.
const Name = "github.com/betterauth-extauthz/extauthz"

// enabled is set once at start, before any request; read on the hot path.
var enabled bool

// propagator reads W3C trace context first, then B3 (single and multi header).
var propagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{},
	b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
)

// Enabled reports whether traces are exported.
func Enabled() bool { return enabled }

// Tracer is extauthz's tracer (a no-op one while tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Setup reads the OTEL_* variables and installs the global tracer provider and
// propagator when tracing is on. shutdown flushes the spans still queued.
func Setup(ctx context.Context, version string) (shutdown func(context.Context) error, err error) {
	noopShutdown := func(context.Context) error { return nil }
	if !wanted() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return noopShutdown, nil
	}
	var exp sdktrace.SpanExporter
	switch proto := protocol(); proto {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf", "":
		exp, err = otlptracehttp.New(ctx)
	default:
		return noopShutdown, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", proto)
	}
	if err != nil {
		return noopShutdown, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(serviceName()), semconv.ServiceVersion(version)))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return noopShutdown, fmt.Errorf("tracing: resource: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER (and _ARG), which the SDK reads
	// itself; its default is parentbased_always_on.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Install(tp)
	return tp.Shutdown, nil
}

// Install makes tp the tracer provider and turns tracing on, with extauthz's
// propagators; nil turns it off. Setup calls it; tests call it with an in-memory
// provider, before anything is served.
func Install(tp trace.TracerProvider) {
	if tp == nil {
		otel.SetTracerProvider(noop.NewTracerProvider())
		enabled = false
		return
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	enabled = true
}

func wanted() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch e := os.Getenv("OTEL_TRACES_EXPORTER"); e {
	case "otlp":
		return true
	case "none":
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func protocol() string {
	if p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" {
		return p
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
}

func serviceName() string {
	if s := os.Getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return "extauthz"
}

// mapCarrier reads the lower-case header map of an ext_authz CheckRequest.
type mapCarrier map[string]string

func (c mapCarrier) Get(k string) string { return c[strings.ToLower(k)] }
func (c mapCarrier) Set(k, v string)     { c[strings.ToLower(k)] = v }
func (c mapCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// mdCarrier reads the incoming gRPC metadata of ctx one key at a time:
// metadata.FromIncomingContext would copy the whole map on every check.
type mdCarrier struct{ ctx context.Context }

func (c mdCarrier) Get(k string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, k); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (mdCarrier) Set(string, string) {}
func (c mdCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	out := make([]string, 0, len(md))
	for k := range md {
		out = append(out, k)
	}
	return out
}

// TrustRequestHeaders makes a parent of the trace context in the checked
// request's own headers (set once at start). Off, such a context only becomes a
// link of a new root trace: nginx, Traefik and an Envoy that does not trace pass the
// client's traceparent on, and a parent-based sampler would let any client force
// sampling or choose the trace id stamped on logs and exemplars.
var TrustRequestHeaders bool

type linkKey struct{}

// FromCheck returns ctx carrying the trace of a gRPC check: the one Envoy put in
// the call's metadata (its span of the ext_authz call), else the one in the
// checked request's headers (a parent if TrustRequestHeaders, a link otherwise).
func FromCheck(ctx context.Context, headers map[string]string) context.Context {
	if !enabled {
		return ctx
	}
	if md := (mdCarrier{ctx}); carries(md) {
		if c := propagator.Extract(ctx, md); trace.SpanContextFromContext(c).IsValid() {
			return c
		}
	}
	if hc := mapCarrier(headers); carries(hc) {
		return fromRequest(ctx, hc)
	}
	return ctx
}

// carries tells whether c holds a header of the propagators, so that a check
// without one costs no extraction.
func carries(c propagation.TextMapCarrier) bool {
	return c.Get("traceparent") != "" || c.Get("b3") != "" || c.Get("x-b3-traceid") != ""
}

// FromHTTP returns ctx carrying the trace of an HTTP check's headers. They are the
// proxy's own request to extauthz, but nginx and Traefik copy the client's headers
// into it, so they are treated as the checked request's.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	if !enabled {
		return ctx
	}
	return fromRequest(ctx, propagation.HeaderCarrier(h))
}

func fromRequest(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	remote := propagator.Extract(ctx, c)
	if TrustRequestHeaders {
		return remote
	}
	if sc := trace.SpanContextFromContext(remote); sc.IsValid() {
		return context.WithValue(ctx, linkKey{}, sc)
	}
	return ctx
}

// StartCheck starts the span of one check: a child of the trusted parent in ctx,
// or a new root linked to an untrusted one.
func StartCheck(ctx context.Context) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	if sc, ok := ctx.Value(linkKey{}).(trace.SpanContext); ok {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return Tracer().Start(ctx, "extauthz.check", opts...)
}

// TraceID is the trace id of ctx's span when it is sampled, "" otherwise (for
// logs and exemplars: an id no collector keeps would mislead).
func TraceID(ctx context.Context) string {
	if !enabled {
		return ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// Transport wraps an HTTP client transport with client spans and trace
// propagation (JWKS, revocation feed and session calls to Better Auth). nil means
// http.DefaultTransport.
//
// Not otelhttp's transport: it records url.full, query string included, and an
// operator's JWKS or feed URL may carry a key there; these spans record the
// path only, like the logs.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if !enabled {
		return rt
	}
	return clientSpans{rt}
}

type clientSpans struct{ next http.RoundTripper }

func (c clientSpans) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := Tracer().Start(req.Context(), "HTTP "+req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(req.Method), semconv.ServerAddress(req.URL.Hostname()), semconv.URLPath(req.URL.Path)))
	defer span.End()
	req = req.Clone(ctx)
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		span.SetStatus(codes.Error, "request failed")
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}
