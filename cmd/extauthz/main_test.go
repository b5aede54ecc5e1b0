package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const samples = "../../testdata/betterauth"

func runCLI(args ...string) (int, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String() + errOut.String()
}

type sample struct {
	dir   string
	token string
	iat   int64
	iss   string
	uuid  string
	kid   string
}

func loadSample(t *testing.T, alg string) sample {
	t.Helper()
	dir := filepath.Join(samples, alg)
	tok, err := os.ReadFile(filepath.Join(dir, "token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Header  map[string]any `json:"header"`
		Payload map[string]any `json:"payload"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "decoded.json"))
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return sample{
		dir: dir, token: strings.TrimSpace(string(tok)), iat: int64(d.Payload["iat"].(float64)),
		iss: d.Payload["iss"].(string), uuid: d.Payload["uuid"].(string), kid: d.Header["kid"].(string),
	}
}

func TestPolicyCheck(t *testing.T) {
	if code, out := runCLI("policy", "check", "../../examples/policy.yaml"); code != 0 || !strings.Contains(out, "ok:") {
		t.Fatalf("example policy: %d %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("issuers: [{betterAuthURL: https://a}]\nrules: [{name: own, paths: ['/api/{id}'], owner: {param: user_id, claim: uuid}}]\n"), 0o600)
	code, out := runCLI("policy", "check", bad)
	if code != 1 || !strings.Contains(out, `rules[0] "own": owner.param`) {
		t.Fatalf("bad policy: %d %s", code, out)
	}

	// Lint: an owner rule next to default: authenticated is valid, with a warning;
	// --strict makes the warning fatal.
	lint := filepath.Join(t.TempDir(), "lint.yaml")
	os.WriteFile(lint, []byte("issuers: [{betterAuthURL: https://a.example}]\ndefault: authenticated\nrules: [{name: own, paths: ['/api/{id}'], owner: {param: id, claim: uuid}}, {name: all, paths: ['/api/**']}]\n"), 0o600)
	code, out = runCLI("policy", "check", lint)
	if code != 0 || !strings.Contains(out, `warning: rule "own" checks ownership, but default: authenticated`) ||
		!strings.Contains(out, `warning: rule "own" checks ownership, but the later rule "all"`) || !strings.Contains(out, "ok:") {
		t.Fatalf("lint: %d %s", code, out)
	}
	code, out = runCLI("policy", "check", "--strict", lint)
	if code != 1 || !strings.Contains(out, "2 lint warning(s) with --strict") {
		t.Fatalf("lint --strict: %d %s", code, out)
	}
	if code, out := runCLI("policy", "check", "--strict", "../../examples/policy.yaml"); code != 0 {
		t.Fatalf("example policy is not lint-clean: %d %s", code, out)
	}
}

func TestVerifyJWKS(t *testing.T) {
	body, _ := os.ReadFile(filepath.Join(samples, "ES512", "jwks.json"))
	mux := http.NewServeMux()
	mux.HandleFunc("/api/auth/jwks", func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	mux.HandleFunc("/empty", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"keys":[]}`)) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	code, out := runCLI("verify-jwks", srv.URL+"/api/auth/jwks")
	if code != 0 || !strings.Contains(out, "kd9Pd7Y75IxSRT2bABP75ekKxWNswfnH   EC   P-521      ES512") {
		t.Fatalf("good jwks: %d\n%s", code, out)
	}
	for _, u := range []string{srv.URL + "/empty", srv.URL + "/missing", "http://auth.example.com/api/auth/jwks"} {
		if code, out := runCLI("verify-jwks", u); code != 1 || !strings.Contains(out, "extauthz:") {
			t.Errorf("%s: %d %s", u, code, out)
		}
	}
	if code, _ := runCLI("verify-jwks"); code != 2 {
		t.Errorf("no URL: exit %d, want 2", code)
	}
}

func TestVerifyToken(t *testing.T) {
	for _, alg := range []string{"EdDSA", "ES256", "ES512", "RS256", "PS256"} {
		s := loadSample(t, alg)
		jwks := filepath.Join(s.dir, "jwks.json")
		code, out := runCLI("verify-token", "--jwks-file", jwks, "--token", s.token, "--issuer", s.iss, "--at", fmt.Sprint(s.iat))
		if code != 0 || !strings.Contains(out, "valid: kid "+s.kid) || !strings.Contains(out, `"uuid":"`+s.uuid) {
			t.Errorf("%s at iat: %d\n%s", alg, code, out)
		}
		code, out = runCLI("verify-token", "--jwks-file", jwks, "--token", s.token, "--issuer", s.iss)
		if code != 1 || !strings.Contains(out, "reason: token_expired") {
			t.Errorf("%s now: %d\n%s", alg, code, out)
		}
	}
	s := loadSample(t, "EdDSA")
	code, out := runCLI("verify-token", "--jwks-file", filepath.Join(s.dir, "jwks.json"), "--token", s.token, "--issuer", s.iss, "--audience", "https://api.example.com", "--at", fmt.Sprint(s.iat))
	if code != 1 || !strings.Contains(out, "reason: audience_mismatch") {
		t.Errorf("wrong audience: %d\n%s", code, out)
	}
	code, out = runCLI("verify-token", "--jwks-file", filepath.Join(samples, "ES256", "jwks.json"), "--token", s.token, "--at", fmt.Sprint(s.iat))
	if code != 1 || !strings.Contains(out, "reason: unknown_kid") {
		t.Errorf("other issuer's keys: %d\n%s", code, out)
	}
}

func TestPolicyExplain(t *testing.T) {
	s := loadSample(t, "EdDSA")
	cfg := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`issuers: [{betterAuthURL: %q}]
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks"]
    owner: { param: user_id, claim: uuid }
`, s.iss)), 0o600)
	args := []string{"policy", "explain", "--config", cfg, "--jwks-file", filepath.Join(s.dir, "jwks.json"), "--token", s.token, "--at", fmt.Sprint(s.iat)}
	code, out := runCLI(append(args, "--path", "/api/"+strings.ToUpper(s.uuid)+"/tasks")...)
	if code != 0 || !strings.Contains(out, "decision: ALLOW 200") || !strings.Contains(out, "set header: x-user-uuid: "+s.uuid) {
		t.Fatalf("own tasks: %d\n%s", code, out)
	}
	code, out = runCLI(append(args, "--path", "/api/71c0e039-6d8d-5394-b9e9-ac347e061fd0/tasks")...)
	if code != 0 || !strings.Contains(out, "decision: DENY 403") || !strings.Contains(out, "reason: owner_mismatch") {
		t.Fatalf("other's tasks: %d\n%s", code, out)
	}
	code, out = runCLI("policy", "explain", "--config", cfg, "--path", "/api/x/../y/tasks")
	if code != 0 || !strings.Contains(out, "reason: path_rejected") {
		t.Fatalf("traversal: %d\n%s", code, out)
	}
}

// TestServeBinary builds the real binary, serves with BETTER_AUTH_URL alone against
// a JWKS endpoint, checks a token over gRPC, and stops it with SIGTERM.
func TestServeBinary(t *testing.T) {
	bin := buildBinary(t)
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	jwks := tokentest.NewJWKSServer(t, tokentest.JWKS(key))
	ports, err := testkit.FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--shutdown-delay", "500ms")
	cmd.Env = append(os.Environ(), "BETTER_AUTH_URL="+jwks.URL,
		"EXTAUTHZ_GRPC_ADDR="+ports[0], "EXTAUTHZ_HTTP_ADDR="+ports[1], "EXTAUTHZ_ADMIN_ADDR="+ports[2])
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ready := func() int { return status("http://" + ports[2] + "/readyz") }
	if ok, _ := testkit.Poll(10*time.Second, func() bool { return ready() == 200 }); !ok {
		t.Fatalf("never ready; logs:\n%s", logs.String())
	}

	conn, err := grpc.NewClient(ports[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := key.Sign(tokentest.Claims(jwks.URL, "user1", "6639900d-cfe5-59ec-bd5c-e0e68598457e", time.Now()), nil)
	check := func(auth string) *authv3.CheckResponse {
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{
			Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Path: "/anything", Headers: map[string]string{"authorization": auth},
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := check("Bearer " + tok); r.GetOkResponse() == nil {
		t.Fatalf("valid token denied: %v\n%s", r, logs.String())
	}
	if r := check("Bearer " + tok + "x"); r.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("tampered token: %v", r)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawNotReady, _ := testkit.Poll(400*time.Millisecond, func() bool { return ready() == 503 })
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if !sawNotReady {
		t.Error("readiness did not turn false during the shutdown delay")
	}
	if strings.Contains(logs.String(), tok[:40]) {
		t.Error("a token reached the logs")
	}
	if !strings.Contains(logs.String(), `"reason":"signature_invalid"`) {
		t.Errorf("deny not logged with its reason:\n%s", logs.String())
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "extauthz")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// status is url's HTTP status, or 0 when it does not answer.
func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeExitsWhenTheSourceFails: a policy source that cannot start (here, a
// file in a directory that does not exist) ends serve with an error, rather than
// leaving a process that is never ready; so does a fixed policy that is refused.
func TestServeExitsWhenTheSourceFails(t *testing.T) {
	bin := buildBinary(t)
	for name, env := range map[string][]string{
		"unwatchable file":               {"EXTAUTHZ_CONFIG=" + filepath.Join(t.TempDir(), "missing", "policy.yaml")},
		"refused BETTER_AUTH_URL policy": {"BETTER_AUTH_URL=not a url"},
	} {
		ports, err := testkit.FreeAddrs(3)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "--shutdown-delay", "0s")
		cmd.Env = append(os.Environ(), append(env,
			"EXTAUTHZ_GRPC_ADDR="+ports[0], "EXTAUTHZ_HTTP_ADDR="+ports[1], "EXTAUTHZ_ADMIN_ADDR="+ports[2])...)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(logs.String(), "policy source failed") {
				t.Errorf("%s: exit %v, logs:\n%s", name, err, logs.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s: serve kept running; logs:\n%s", name, logs.String())
		}
	}
}

func TestPolicySchema(t *testing.T) {
	code, out := runCLI("policy", "schema")
	if code != 0 {
		t.Fatalf("policy schema: %d %s", code, out)
	}
	var s struct {
		Properties map[string]any `json:"properties"`
		Required   []string       `json:"required"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if s.Properties["issuers"] == nil || len(s.Required) != 1 || s.Required[0] != "issuers" {
		t.Fatalf("schema properties %v required %v", s.Properties, s.Required)
	}
}

func TestConfigMapRef(t *testing.T) {
	serviceAccountNamespace = filepath.Join(t.TempDir(), "namespace")
	for _, tc := range []struct {
		ref, podNS, file, ns, name string
		ok                         bool
	}{
		{ref: "team/extauthz-policy", ns: "team", name: "extauthz-policy", ok: true},
		{ref: "extauthz-policy", podNS: "team-a", ns: "team-a", name: "extauthz-policy", ok: true},
		{ref: "extauthz-policy", file: "team-b\n", ns: "team-b", name: "extauthz-policy", ok: true},
		{ref: "extauthz-policy"},
		{ref: "/extauthz-policy"},
		{ref: "team/"},
		{ref: "a/b/c"},
	} {
		t.Setenv("POD_NAMESPACE", tc.podNS)
		os.Remove(serviceAccountNamespace)
		if tc.file != "" {
			os.WriteFile(serviceAccountNamespace, []byte(tc.file), 0o600)
		}
		ns, name, err := configMapRef(tc.ref)
		if (err == nil) != tc.ok || ns != tc.ns || name != tc.name {
			t.Errorf("%q (POD_NAMESPACE %q, file %q) = %q %q %v", tc.ref, tc.podNS, tc.file, ns, name, err)
		}
	}
}

// TestTLSFlags: an allow-list that parses to nothing is an error, never "any SAN".
func TestTLSFlags(t *testing.T) {
	for _, sans := range []string{",", " ", " , "} {
		f := serveFlags{tlsCert: "c", tlsKey: "k", tlsClientCA: "ca", tlsClientSANs: sans}
		if _, err := f.loadTLS(slog.Default(), nil); err == nil || !strings.Contains(err.Error(), "lists no SAN") {
			t.Errorf("--tls-client-san %q: %v", sans, err)
		}
	}
	if _, err := (&serveFlags{adminTLS: true}).loadTLS(slog.Default(), nil); err == nil {
		t.Error("--admin-tls without a certificate accepted")
	}
}
