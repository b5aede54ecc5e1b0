//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tlstest"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

const (
	extauthzDNS = "extauthz.extauthz.svc.cluster.local"
	envoySPIFFE = "spiffe://cluster.local/ns/gateway/sa/envoy"
)

// mtls is the shipped examples/envoy/envoy-mtls.yaml running against an extauthz
// that serves TLS and requires Envoy's client certificate, with their files.
type mtls struct {
	ca               *tlstest.CA
	srvDir, envoyDir string
	serverSANs       tlstest.SANs
	client           tlstest.Pair
	ext              *stack.Extauthz
	envoy            *stack.Envoy
}

// startMTLS starts that pair in front of backend; the test's cleanup stops it.
func startMTLS(tb testing.TB, dir, backend string) *mtls {
	tb.Helper()
	m := &mtls{ca: tlstest.NewCA("extauthz e2e CA"), srvDir: filepath.Join(dir, "extauthz-tls"), envoyDir: filepath.Join(dir, "envoy-tls"),
		serverSANs: tlstest.SANs{DNS: []string{extauthzDNS}, IPs: []string{"127.0.0.1"}}}
	for _, d := range []string{m.srvDir, m.envoyDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	first := m.ca.Server("extauthz", m.serverSANs)
	tlstest.SwapInto(m.srvDir, map[string][]byte{"tls.crt": first.CertPEM, "tls.key": first.KeyPEM, "ca.crt": m.ca.CertPEM})
	m.client = m.ca.Client("envoy", tlstest.SANs{URIs: []string{envoySPIFFE}})
	m.client.Write(m.envoyDir, "tls")
	m.ca.Write(m.envoyDir, "ca")
	for _, f := range []string{"client-sds.yaml", "ca-sds.yaml"} {
		b, err := os.ReadFile(filepath.Join(tools.ExampleDir, "envoy", "extauthz-tls", f))
		if err != nil {
			tb.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), "/etc/envoy/extauthz-tls", m.envoyDir))
		if err := os.WriteFile(filepath.Join(m.envoyDir, f), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	var err error
	m.ext, err = stack.StartExtauthz(tools, dir, "extauthz-tls", stack.Policy(st.BetterAuth.URL, ""), stack.ExtauthzOptions{LogLevel: "info", Args: []string{
		"--tls-cert-file", filepath.Join(m.srvDir, "tls.crt"), "--tls-key-file", filepath.Join(m.srvDir, "tls.key"),
		"--tls-client-ca-file", filepath.Join(m.srvDir, "ca.crt"), "--tls-client-san", envoySPIFFE + ",dns:nginx.gateway.internal"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.ext.Proc.Stop)
	m.envoy, err = stack.StartEnvoyExample(tools, dir, "envoy-mtls", stack.EnvoyExample{File: "envoy-mtls.yaml", ExtauthzGRPC: m.ext.GRPC, Backend: backend,
		Replace: map[string]string{"/etc/envoy/extauthz-tls": m.envoyDir}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.envoy.Proc.Stop)
	return m
}

// TestEnvoyMTLS runs the shipped examples/envoy/envoy-mtls.yaml: Envoy and extauthz
// authenticate each other, requests are allowed, extauthz's certificate rotates
// (kubelet-style swap) under load with 0 failed requests, and an Envoy without a
// client certificate is refused, so its requests fail closed.
func TestEnvoyMTLS(t *testing.T) {
	dir := t.TempDir()
	backend := fastBackend(t)
	m := startMTLS(t, dir, backend)
	ca, srvDir, envoyDir, client, ext, envoy, serverSANs := m.ca, m.srvDir, m.envoyDir, m.client, m.ext, m.envoy, m.serverSANs
	tok, err := userA.Token()
	if err != nil {
		t.Fatal(err)
	}
	get := func(base string) (int, error) {
		req, _ := http.NewRequest("GET", base+"/api/"+userA.UUID+"/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	testkit.Eventually(t, "allowed through Envoy over mTLS", 10*time.Second, func() bool { c, _ := get(envoy.URL); return c == 200 })

	// Rotate extauthz's certificate under load.
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if c, err := get(envoy.URL); c != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %v", c, err))
				}
			}
		}()
	}
	time.Sleep(time.Second)
	second := ca.Server("extauthz", serverSANs)
	tlstest.SwapInto(srvDir, map[string][]byte{"tls.crt": second.CertPEM, "tls.key": second.KeyPEM, "ca.crt": ca.CertPEM})
	served := func() string {
		pair, _ := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
		c, err := tls.Dial("tcp", ext.GRPC, &tls.Config{RootCAs: ca.Pool(), ServerName: extauthzDNS, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}})
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	testkit.Eventually(t, "extauthz serves the new certificate", 10*time.Second, func() bool { return served() == second.Cert.SerialNumber.String() })
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	applied, _ := ext.Metric("extauthz_tls_reloads_total", `result="applied"`)
	t.Logf("mTLS through Envoy: %d requests across a certificate rotation, %d failed; %0.f certificate loads applied", sent.Load(), failed.Load(), applied)
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across the rotation (first: %v)", n, sent.Load(), firstFailure.Load())
	}
	if applied < 2 {
		t.Errorf("tls reloads applied = %v, want the start and the rotation", applied)
	}

	// nginx with the shipped TLS snippet: allowed; with a certificate from another
	// CA: refused, and its request fails closed.
	for _, tc := range []struct {
		name string
		ca   *tlstest.CA
		want int
	}{{"nginx-mtls", ca, 200}, {"nginx-wrong-ca", tlstest.NewCA("another CA"), 500}} {
		nd := filepath.Join(dir, tc.name+"-tls")
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		tc.ca.Client("nginx", tlstest.SANs{DNS: []string{"nginx.gateway.internal"}}).Write(nd, "tls")
		ca.Write(nd, "ca")
		snippet, err := os.ReadFile(filepath.Join(tools.ExampleDir, "nginx", "extauthz-tls.conf"))
		if err != nil {
			t.Fatal(err)
		}
		inc := filepath.Join(nd, "extauthz-tls.conf")
		if err := os.WriteFile(inc, []byte(strings.ReplaceAll(string(snippet), "/etc/nginx/extauthz-tls", nd)), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"tls.key", "tls.crt", "ca.crt", ""} { // nginx workers run as nobody
			_ = os.Chmod(filepath.Join(nd, f), 0o755)
		}
		ngx, err := stack.StartNginxWith(tools, dir, tc.name, ext.HTTP, backend, map[string]string{"proxy_pass http://extauthz/nginx;": "include " + inc + ";"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := get(ngx.URL)
		ngx.Proc.Stop()
		if c != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, c, err, tc.want)
		}
	}

	// An Envoy that presents no client certificate is refused: its requests fail closed.
	anon, err := stack.StartEnvoyExample(tools, dir, "envoy-no-client-cert", stack.EnvoyExample{File: "envoy-mtls.yaml", ExtauthzGRPC: ext.GRPC, Backend: backend,
		Replace: map[string]string{"/etc/envoy/extauthz-tls": envoyDir},
		Edit: func(cfg map[string]any) error {
			ctx := stack.EnvoyCluster(cfg, "extauthz")["transport_socket"].(map[string]any)["typed_config"].(map[string]any)["common_tls_context"].(map[string]any)
			delete(ctx, "tls_certificate_sds_secret_configs")
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Proc.Stop()
	if c, err := get(anon.URL); c != http.StatusForbidden {
		t.Errorf("Envoy without a client certificate: %d %v, want 403 (fail closed)", c, err)
	}
	testkit.Eventually(t, "the refused handshake counted", 10*time.Second, func() bool {
		n, _ := ext.Metric("extauthz_tls_handshake_errors_total", `listener="grpc"`, `reason="no_client_cert"`)
		return n > 0
	})
}
