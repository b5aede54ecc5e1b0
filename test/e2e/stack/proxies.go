package stack

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// Envoy is a running Envoy.
type Envoy struct {
	URL   string
	Admin string
	Proc  *Proc
}

// StartEnvoy runs the shipped examples/envoy/envoy.yaml with its ports moved to free
// ones and its upstreams pointed at extauthzGRPC and backend.
func StartEnvoy(t Tools, dir, name, extauthzGRPC, backend string) (*Envoy, error) {
	return StartEnvoyOn(t, dir, name, FreePort(), extauthzGRPC, backend)
}

// StartEnvoyOn is StartEnvoy listening on the given port (for an origin that must
// be known before Envoy starts, such as Better Auth's baseURL).
func StartEnvoyOn(t Tools, dir, name string, listen int, extauthzGRPC, backend string) (*Envoy, error) {
	return StartEnvoyExample(t, dir, name, EnvoyExample{Listen: listen, ExtauthzGRPC: extauthzGRPC, Backend: backend})
}

// EnvoyExample says which shipped Envoy example to run and where its upstreams are.
type EnvoyExample struct {
	// File in examples/envoy; envoy.yaml when empty.
	File string
	// Listen is the listener's port; a free one when zero.
	Listen                int
	ExtauthzGRPC, Backend string
	// ExtauthzHTTP is where the HTTP-mode example (envoy-http.yaml) finds extauthz.
	ExtauthzHTTP string
	// Replace maps strings of the file to what the test needs (folders).
	Replace map[string]string
	// Edit, when set, changes the parsed config before Envoy gets it.
	Edit func(cfg map[string]any) error
}

// StartEnvoyExample runs a shipped Envoy example with its ports moved.
func StartEnvoyExample(t Tools, dir, name string, ex EnvoyExample) (*Envoy, error) {
	if ex.File == "" {
		ex.File = "envoy.yaml"
	}
	if ex.Listen == 0 {
		ex.Listen = FreePort()
	}
	src, err := os.ReadFile(filepath.Join(t.ExampleDir, "envoy", ex.File))
	if err != nil {
		return nil, err
	}
	admin := FreePort()
	ports := map[string]string{"8080": fmt.Sprint(ex.Listen), "9901": fmt.Sprint(admin), "8000": portOf(ex.Backend)}
	replace := map[string]string{}
	if ex.ExtauthzGRPC != "" {
		ports["9001"] = portOf(ex.ExtauthzGRPC)
	}
	if ex.ExtauthzHTTP != "" {
		ports["9002"] = portOf(ex.ExtauthzHTTP)
		replace["http://127.0.0.1:9002"] = "http://" + ex.ExtauthzHTTP
	}
	cfg, err := moveEnvoyPorts(string(src), ports)
	if err == nil {
		cfg, err = movePorts(cfg, replace)
	}
	if err != nil {
		return nil, fmt.Errorf("examples/envoy/%s: %w", ex.File, err)
	}
	if cfg, err = movePorts(cfg, ex.Replace); err != nil {
		return nil, fmt.Errorf("examples/envoy/%s: %w", ex.File, err)
	}
	if ex.Edit != nil {
		var parsed map[string]any
		if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
			return nil, err
		}
		if err := ex.Edit(parsed); err != nil {
			return nil, err
		}
		out, err := yaml.Marshal(parsed)
		if err != nil {
			return nil, err
		}
		cfg = string(out)
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := Start(dir, name, nil, t.Envoy, "-c", path, "--disable-hot-restart", "--concurrency", "1", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	e := &Envoy{URL: fmt.Sprintf("http://127.0.0.1:%d", ex.Listen), Admin: fmt.Sprintf("http://127.0.0.1:%d", admin), Proc: p}
	if err := WaitHTTP(p, e.Admin+"/ready", 200, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return e, nil
}

// Nginx is a running nginx.
type Nginx struct {
	URL  string
	Proc *Proc
}

// StartNginx runs the shipped examples/nginx/nginx.conf with its ports moved.
func StartNginx(t Tools, dir, name, extauthzHTTP, backend string) (*Nginx, error) {
	return StartNginxWith(t, dir, name, extauthzHTTP, backend, nil)
}

// StartNginxWith is StartNginx with more replacements in the shipped file.
func StartNginxWith(t Tools, dir, name, extauthzHTTP, backend string, replace map[string]string) (*Nginx, error) {
	src, err := os.ReadFile(filepath.Join(t.ExampleDir, "nginx", "nginx.conf"))
	if err != nil {
		return nil, err
	}
	listen := FreePort()
	cfg, err := movePorts(string(src), map[string]string{
		"listen 127.0.0.1:8081;": fmt.Sprintf("listen 127.0.0.1:%d;", listen),
		"server 127.0.0.1:9002;": "server " + extauthzHTTP + ";",
		"server 127.0.0.1:8000;": "server " + backend + ";",
	})
	if err == nil {
		cfg, err = movePorts(cfg, replace)
	}
	if err != nil {
		return nil, fmt.Errorf("examples/nginx/nginx.conf: %w", err)
	}
	prefix := filepath.Join(dir, name)
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return nil, err
	}
	// nginx workers run as nobody when started as root: they must reach the prefix.
	for d := prefix; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 == 0 {
			_ = os.Chmod(d, fi.Mode().Perm()|0o055)
		}
	}
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, err := Start(dir, name, nil, t.Nginx, "-p", prefix, "-c", path, "-e", "stderr")
	if err != nil {
		return nil, err
	}
	n := &Nginx{URL: fmt.Sprintf("http://127.0.0.1:%d", listen), Proc: p}
	if err := WaitTCP(p, n.URL[len("http://"):], 15*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return n, nil
}

// StartEnvoyHTTP runs the shipped examples/envoy/envoy-http.yaml (Envoy's HTTP
// ext_authz against extauthz's /envoy endpoint) with its ports moved.
func StartEnvoyHTTP(t Tools, dir, name, extauthzHTTP, backend string) (*Envoy, error) {
	return StartEnvoyExample(t, dir, name, EnvoyExample{File: "envoy-http.yaml", ExtauthzHTTP: extauthzHTTP, Backend: backend})
}

// Caddy is a running Caddy.
type Caddy struct {
	URL  string
	Proc *Proc
}

// StartCaddy runs the shipped examples/caddy/Caddyfile (forward_auth to extauthz's
// /traefik endpoint) with its ports moved.
func StartCaddy(t Tools, dir, name, extauthzHTTP, backend string) (*Caddy, error) {
	src, err := os.ReadFile(filepath.Join(t.ExampleDir, "caddy", "Caddyfile"))
	if err != nil {
		return nil, err
	}
	listen := FreePort()
	cfg, err := movePorts(string(src), map[string]string{
		"http://:8082 {":                fmt.Sprintf("http://:%d {", listen),
		"forward_auth 127.0.0.1:9002 {": "forward_auth " + extauthzHTTP + " {",
		"reverse_proxy 127.0.0.1:8000":  "reverse_proxy " + backend,
	})
	if err != nil {
		return nil, fmt.Errorf("examples/caddy/Caddyfile: %w", err)
	}
	home := filepath.Join(dir, name)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	// Caddy keeps its state under the XDG folders: the test's, not the user's.
	env := []string{"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "XDG_DATA_HOME=" + filepath.Join(home, "data")}
	p, err := Start(dir, name, env, t.Caddy, "run", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	c := &Caddy{URL: fmt.Sprintf("http://127.0.0.1:%d", listen), Proc: p}
	if err := WaitTCP(p, c.URL[len("http://"):], 15*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return c, nil
}

// StartFastAPI runs examples/fastapi with uvicorn and returns its address.
func StartFastAPI(t Tools, dir, name string) (*Proc, string, error) {
	port := FreePort()
	p, err := Start(dir, name, nil, filepath.Join(t.Venv, "bin", "uvicorn"), "app:app",
		"--app-dir", filepath.Join(t.ExampleDir, "fastapi"), "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--no-access-log")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := WaitHTTP(p, "http://"+addr+"/healthz", 200, 30*time.Second); err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, addr, nil
}

func movePorts(cfg string, repl map[string]string) (string, error) {
	for old, new := range repl {
		if !strings.Contains(cfg, old) {
			return "", fmt.Errorf("expected %q in the shipped example", old)
		}
		cfg = strings.ReplaceAll(cfg, old, new)
	}
	return cfg, nil
}

var portValue = regexp.MustCompile(`(port_value:\s*)(\d+)\b`)

// moveEnvoyPorts rewrites every port_value found in repl, and fails if one of them
// is missing from the config.
func moveEnvoyPorts(cfg string, repl map[string]string) (string, error) {
	seen := map[string]bool{}
	cfg = portValue.ReplaceAllStringFunc(cfg, func(m string) string {
		sub := portValue.FindStringSubmatch(m)
		if to, ok := repl[sub[2]]; ok {
			seen[sub[2]] = true
			return sub[1] + to
		}
		return m
	})
	for from := range repl {
		if !seen[from] {
			return "", fmt.Errorf("expected port_value %s in the config", from)
		}
	}
	return cfg, nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Seen is one request as the backend received it.
type Seen struct {
	Method, Path string
	Header       http.Header
}

// Recorder is a reverse proxy in front of the backend that remembers what reached it,
// so tests can assert on the exact headers (and their count) the backend got.
type Recorder struct {
	Addr string
	srv  *http.Server
	mu   sync.Mutex
	seen []Seen
}

// StartRecorder proxies to target (host:port).
func StartRecorder(target string) (*Recorder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Recorder{Addr: l.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, Seen{Method: req.Method, Path: req.URL.RequestURI(), Header: req.Header.Clone()})
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	})}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

// Last returns the last request seen for which match is true.
func (r *Recorder) Last(match func(Seen) bool) (Seen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.seen) - 1; i >= 0; i-- {
		if match(r.seen[i]) {
			return r.seen[i], true
		}
	}
	return Seen{}, false
}

// Count returns how many requests matched.
func (r *Recorder) Count(match func(Seen) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seen {
		if match(s) {
			n++
		}
	}
	return n
}

// Close stops the recorder.
func (r *Recorder) Close() { _ = r.srv.Close() }

// StartEnvoyReplicas is StartEnvoy with one extauthz cluster of several endpoints
// (the shipped example's cluster, its health checks included, given more hosts).
func StartEnvoyReplicas(t Tools, dir, name string, extauthzGRPC []string, backend string) (*Envoy, error) {
	return StartEnvoyExample(t, dir, name, EnvoyExample{ExtauthzGRPC: extauthzGRPC[0], Backend: backend, Edit: func(cfg map[string]any) error {
		var endpoints []any
		for _, a := range extauthzGRPC {
			port, _ := strconv.Atoi(portOf(a))
			endpoints = append(endpoints, map[string]any{"endpoint": map[string]any{"address": map[string]any{
				"socket_address": map[string]any{"address": "127.0.0.1", "port_value": port}}}})
		}
		cl := EnvoyCluster(cfg, "extauthz")
		if cl == nil {
			return fmt.Errorf("no extauthz cluster in the shipped example")
		}
		cl["load_assignment"].(map[string]any)["endpoints"] = []any{map[string]any{"lb_endpoints": endpoints}}
		return nil
	}})
}

// EnvoyCluster finds a static cluster of a parsed Envoy config by name.
func EnvoyCluster(cfg map[string]any, name string) map[string]any {
	sr, _ := cfg["static_resources"].(map[string]any)
	cls, _ := sr["clusters"].([]any)
	for _, c := range cls {
		if cl, ok := c.(map[string]any); ok && cl["name"] == name {
			return cl
		}
	}
	return nil
}
