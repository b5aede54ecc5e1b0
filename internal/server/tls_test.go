package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/server"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tlsconf"
	"github.com/betterauth-extauthz/extauthz/internal/tlstest"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

type tlsFixture struct {
	ca                 *tlstest.CA
	dir                string
	grpcAddr, httpAddr string
	adminAddr          string
	m                  *metrics.Recorder
	tls                *tlsconf.Server
	token, uuid        string
}

var serverSANs = tlstest.SANs{DNS: []string{"extauthz.test"}, IPs: []string{"127.0.0.1"}}

// startTLS runs a server with mTLS on the check listeners, its files in a
// kubelet-style folder, admitting only the given client SANs.
func startTLS(t *testing.T, sans []string) *tlsFixture {
	t.Helper()
	ca := tlstest.NewCA("extauthz test CA")
	dir := t.TempDir()
	srvPair := ca.Server("extauthz", serverSANs)
	tlstest.SwapInto(dir, map[string][]byte{"tls.crt": srvPair.CertPEM, "tls.key": srvPair.KeyPEM, "ca.crt": ca.CertPEM})
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ts, err := tlsconf.New(tlsconf.Config{CertFile: dir + "/tls.crt", KeyFile: dir + "/tls.key", ClientCAFile: dir + "/ca.crt",
		ClientSANs: sans, Poll: 50 * time.Millisecond, Log: log, OnReload: m.TLSReloaded})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e, key := enginetest.New(t, doc, now, m, nil)
	srv, err := server.New(server.Config{Engine: e, Metrics: m, Gatherer: reg, Log: log,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", TLS: ts, AdminTLS: true, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go ts.Run(ctx)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	f := &tlsFixture{ca: ca, dir: dir, m: m, tls: ts, uuid: "6639900d-cfe5-59ec-bd5c-e0e68598457e"}
	f.grpcAddr, f.httpAddr, f.adminAddr = srv.Addrs()
	f.token = key.Sign(tokentest.Claims("https://auth.example.com", "u1", f.uuid, now), nil)
	return f
}

func (f *tlsFixture) client(t *testing.T, cert *tlstest.Pair, roots *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "extauthz.test"}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// Always sent, as Envoy does, even when the server asks for another CA
		// (Go's client would otherwise keep it back).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (f *tlsFixture) check(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: "/api/" + f.uuid + "/tasks",
			Headers: map[string]string{"authorization": "Bearer " + f.token}}}}})
	if err == nil && resp.GetStatus().GetCode() != 0 {
		return errDenied
	}
	return err
}

var errDenied = io.ErrUnexpectedEOF

func TestMTLSHandshakes(t *testing.T) {
	const spiffe = "spiffe://cluster.local/ns/gateway/sa/envoy"
	f := startTLS(t, []string{spiffe, "dns:gateway.internal"})
	other := tlstest.NewCA("another CA")
	good := f.ca.Client("envoy", tlstest.SANs{URIs: []string{spiffe}})
	goodDNS := f.ca.Client("gw", tlstest.SANs{DNS: []string{"Gateway.Internal"}})
	wrongCA := other.Client("envoy", tlstest.SANs{URIs: []string{spiffe}})
	wrongSAN := f.ca.Client("app", tlstest.SANs{URIs: []string{"spiffe://cluster.local/ns/app/sa/default"}})
	for _, tc := range []struct {
		name   string
		cert   *tlstest.Pair
		ok     bool
		reason string
	}{
		{"the gateway's SPIFFE id", &good, true, ""},
		{"an allowed DNS SAN", &goodDNS, true, ""},
		{"no client certificate", nil, false, "no_client_cert"},
		{"a certificate from another CA", &wrongCA, false, "bad_client_cert"},
		{"a SAN not on the list", &wrongSAN, false, "san_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(f.m.TLSHandshakeErrors("grpc", tc.reason))
			err := f.check(f.client(t, tc.cert, f.ca.Pool()))
			if (err == nil) != tc.ok {
				t.Fatalf("check: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				testkit.Eventually(t, "handshake counted as "+tc.reason, 2*time.Second, func() bool {
					return testutil.ToFloat64(f.m.TLSHandshakeErrors("grpc", tc.reason)) > before
				})
			}
		})
	}

	// The HTTP check listener: the same rules, counted under "http".
	httpClient := func(cert *tlstest.Pair) *http.Client {
		cfg := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "extauthz.test"}
		if cert != nil {
			pair, _ := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 2 * time.Second}
	}
	req := func(c *http.Client) (int, error) {
		r, _ := http.NewRequest("GET", "https://"+f.httpAddr+"/envoy/api/"+f.uuid+"/tasks", nil)
		r.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := c.Do(r)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := req(httpClient(&good)); err != nil || code != 200 {
		t.Errorf("HTTP check with the gateway's certificate: %d %v", code, err)
	}
	if _, err := req(httpClient(&wrongSAN)); err == nil {
		t.Error("HTTP check with a SAN not on the list answered")
	}
	testkit.Eventually(t, "HTTP refusal counted", 2*time.Second, func() bool {
		return testutil.ToFloat64(f.m.TLSHandshakeErrors("http", "san_not_allowed")) > 0
	})
	// Admin over TLS, without a client certificate (kubelet's probes have none).
	if resp, err := httpClient(nil).Get("https://" + f.adminAddr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("admin over TLS without a client certificate: %v", err)
	}
}

// TestCertificateRotation: new files are picked up under a running client, which
// keeps working; a new connection sees the new certificate; a broken new pair is
// refused and the old one kept.
func TestCertificateRotation(t *testing.T) {
	f := startTLS(t, nil)
	client := f.ca.Client("envoy", tlstest.SANs{})
	conn := f.client(t, &client, f.ca.Pool())
	if err := f.check(conn); err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		pair, _ := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
		c, err := tls.Dial("tcp", f.grpcAddr, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "extauthz.test", Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}})
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()

	var failed, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := f.check(conn); err != nil {
				failed.Add(1)
			}
			done.Add(1)
		}
	}()
	next := f.ca.Server("extauthz", serverSANs)
	tlstest.SwapInto(f.dir, map[string][]byte{"tls.crt": next.CertPEM, "tls.key": next.KeyPEM, "ca.crt": f.ca.CertPEM})
	want := next.Cert.SerialNumber.String()
	testkit.Eventually(t, "a new connection sees the new certificate", 5*time.Second, func() bool { return serial() == want })

	// A broken pair: the new certificate with the old key.
	third := f.ca.Server("extauthz", serverSANs)
	tlstest.SwapInto(f.dir, map[string][]byte{"tls.crt": third.CertPEM, "tls.key": next.KeyPEM, "ca.crt": f.ca.CertPEM})
	testkit.Eventually(t, "the broken pair refused", 5*time.Second, func() bool { return testutil.ToFloat64(f.m.TLSReloads("rejected")) == 1 })
	if got := serial(); got != want {
		t.Errorf("after a broken pair the server presents %s, want the previous %s", got, want)
	}
	close(stop)
	wg.Wait()
	if first == want {
		t.Fatal("the rotation did not change the certificate")
	}
	if n := failed.Load(); n != 0 || done.Load() == 0 {
		t.Errorf("%d of %d checks on the established connection failed during rotation", n, done.Load())
	}
	t.Logf("%d checks on one connection across a rotation and a refused pair, 0 failed", done.Load())
}
