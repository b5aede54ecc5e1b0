//go:build node

// Package node installs the Helm chart on a real single-node Kubernetes built here
// (hack/node/node-up.sh: kube-apiserver, etcd, controller-manager, scheduler,
// kubelet, kube-proxy, containerd and runc) and tests what only a running cluster
// shows: the chart's pods become Ready locked down, the ConfigMap watch works with
// the mounted token and the shipped Role, a policy edit applies without a restart,
// a bad policy keeps the pods serving, and a rolling update and a node drain behind
// the real Envoy lose no request. `make node-test` (part of `make test`).
package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

const (
	bridgeIP = "10.244.0.1" // hack/node/lib.sh's BRIDGE_IP: pods reach the host there
	image    = "registry.local/extauthz/extauthz"
	ns       = "extauthz"
	release  = "extauthz"
	uuidA    = "6639900d-cfe5-59ec-bd5c-e0e68598457e"
)

var (
	repo, kubeconfig, helm, kubectl string
)

func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := try(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func k(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, 2*time.Minute, kubectl, append([]string{"-n", ns}, args...)...)
}

func TestChartOnARealNode(t *testing.T) {
	wd, _ := os.Getwd()
	repo = filepath.Dir(filepath.Dir(wd))
	helm = os.Getenv("HELM")
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	tools, err := stack.ToolsFromEnv()
	if err != nil || helm == "" || assets == "" {
		t.Fatalf("the node test needs the e2e and deploy tools (HELM, KUBEBUILDER_ASSETS, E2E_*): run `make node-test`: %v", err)
	}
	kubectl = filepath.Join(assets, "kubectl")
	state := os.Getenv("NODE_STATE")
	if state == "" {
		state = "/var/lib/extauthz-node"
	}
	kubeconfig = filepath.Join(state, "admin.kubeconfig")

	start := time.Now()
	up := run(t, 40*time.Minute, filepath.Join(repo, "hack", "node", "node-up.sh"))
	t.Cleanup(func() {
		if out, err := try(5*time.Minute, filepath.Join(repo, "hack", "node", "node-down.sh")); err != nil {
			t.Errorf("node-down.sh: %v\n%s", err, out)
		}
	})
	t.Logf("node Ready in %s\n%s", time.Since(start).Round(time.Second), lastLines(up, 3))

	// The image: the static binary and the CA bundle on an empty base, uid 65532.
	dir := t.TempDir()
	bin := filepath.Join(dir, "extauthz")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/extauthz")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	tarball := filepath.Join(dir, "extauthz.tar")
	cache := os.Getenv("CACHE")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache", "extauthz")
	}
	run(t, time.Minute, filepath.Join(cache, "node", "images", "bin", "mkimage"), "-bin", bin, "-name", "/extauthz",
		"-file", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt", "-user", "65532:65532", "-tag", image+":test", "-o", tarball)
	run(t, time.Minute, filepath.Join(cache, "node", "bin", "ctr"), "--address", "/run/extauthz-node/containerd/containerd.sock", "-n", "k8s.io", "images", "import", "--local", tarball)

	// Better Auth's JWKS, where the pods can reach it.
	key := tokentest.NewKey(jwa.EdDSA, "node-key")
	ln, err := net.Listen("tcp", bridgeIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	jwks := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(tokentest.JWKS(key))
	})}
	go func() { _ = jwks.Serve(ln) }()
	defer jwks.Close()
	issuer := "http://" + ln.Addr().String()
	policy := func(extraRule string) string {
		return fmt.Sprintf(`{"issuers":[{"betterAuthURL":%q,"allowInsecureJWKS":true}],"rules":[%s{"name":"own-tasks","paths":["/api/{user_id}/tasks"],"owner":{"param":"user_id","claim":"uuid"}}],"default":"deny",
			"fragments":{"team-a":["team-a.example.com"],"team-b":["team-b.example.com"]}}`, issuer, extraRule)
	}
	valuesFile := filepath.Join(dir, "values.json")
	// helm test also runs these cases against the installed policy; fragments are
	// watched in two team namespaces (a Role in each).
	cases, _ := json.Marshal(map[string]string{"tasks.test.yaml": `cases:
  - name: own tasks
    request: {path: /api/` + uuidA + `/tasks}
    token: {claims: {sub: alice, uuid: ` + uuidA + `}}
    want: {decision: allow, rule: own-tasks}
  - name: someone else's
    request: {path: /api/71c0e039-6d8d-5394-b9e9-ac347e061fd0/tasks}
    token: {claims: {sub: alice, uuid: ` + uuidA + `}}
    want: {decision: deny, status: 403, reason: owner_mismatch}
`})
	for _, team := range []string{"team-a", "team-b"} {
		run(t, time.Minute, kubectl, "create", "namespace", team)
	}
	writeValues := func(doc string) {
		v := fmt.Sprintf(`{"image":{"repository":%q,"tag":"test","pullPolicy":"Never"},
			"policy":{"document":%s,"fragments":{"enabled":true,"namespaces":["team-a","team-b"]}},
			"helmTest":{"cases":%s},
			"resources":{"requests":{"cpu":"10m","memory":"32Mi"},"limits":{"cpu":"500m","memory":"128Mi"}},
			"shutdown":{"delay":"5s","timeout":"5s"},"terminationGracePeriodSeconds":20}`, image, doc, cases)
		if err := os.WriteFile(valuesFile, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeValues(policy(""))
	chart := filepath.Join(repo, "deploy", "helm", "extauthz")
	t0 := time.Now()
	run(t, 5*time.Minute, helm, "upgrade", "--install", release, chart, "-n", ns, "--create-namespace", "-f", valuesFile, "--wait", "--rollback-on-failure", "--timeout", "3m")
	t.Logf("helm upgrade --install --wait: %s", time.Since(t0).Round(time.Second))
	out := run(t, 5*time.Minute, helm, "test", release, "-n", ns, "--timeout", "2m")
	if !strings.Contains(out, "Succeeded") {
		t.Errorf("helm test did not succeed:\n%s", out)
	}

	// Ready, locked down as rendered, the watch working through the Role.
	pods := podsOf(t)
	if len(pods) != 2 {
		t.Fatalf("%d pods, want 2", len(pods))
	}
	for _, p := range pods {
		if !p.ready || p.uid != 65532 || !p.readOnlyRoot || p.restarts != 0 {
			t.Errorf("pod %s: ready %v uid %d read-only root %v restarts %d", p.name, p.ready, p.uid, p.readOnlyRoot, p.restarts)
		}
	}
	if logs := k(t, "logs", "deploy/"+release, "--tail", "200"); !strings.Contains(logs, "policy applied") {
		t.Errorf("no policy applied from the ConfigMap in the logs:\n%s", lastLines(logs, 20))
	}

	// The real Envoy on the host, to the Service's ClusterIP (kube-proxy).
	clusterIP := strings.TrimSpace(k(t, "get", "svc", release, "-o", "jsonpath={.spec.clusterIP}"))
	backend := fastBackend(t)
	envoy, err := stack.StartEnvoyExample(tools, dir, "envoy-node", stack.EnvoyExample{ExtauthzGRPC: clusterIP + ":9001", Backend: backend, Edit: func(cfg map[string]any) error {
		eps := stack.EnvoyCluster(cfg, "extauthz")["load_assignment"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)["lb_endpoints"].([]any)
		eps[0].(map[string]any)["endpoint"].(map[string]any)["address"].(map[string]any)["socket_address"].(map[string]any)["address"] = clusterIP
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer envoy.Proc.Stop()
	tok := key.Sign(tokentest.Claims(issuer, "alice", uuidA, time.Now()), nil)
	get := func(path string) int { return status(envoy.URL+path, "", tok) }
	testkit.Eventually(t, "allowed through Envoy and the cluster", 30*time.Second, func() bool { return get("/api/"+uuidA+"/tasks") == 200 })
	fragmentsOnARealNode(t, dir, envoy.URL)
	if c := get("/public/x"); c != 403 {
		t.Fatalf("/public/x before the policy edit: %d, want 403", c)
	}

	// A policy edit applies live: the same pods, no restart.
	names := podNames(pods)
	writeValues(policy(`{"name":"public","paths":["/public/**"],"public":true},`))
	run(t, 3*time.Minute, helm, "upgrade", release, chart, "-n", ns, "-f", valuesFile, "--wait", "--timeout", "2m")
	editAt := time.Now()
	testkit.Eventually(t, "the policy edit applied", 60*time.Second, func() bool { return get("/public/x") == 200 })
	t.Logf("policy edit applied through the ConfigMap watch %s after helm upgrade returned", time.Since(editAt).Round(100*time.Millisecond))
	if after := podsOf(t); podNames(after) != names || after[0].restarts+after[1].restarts != 0 {
		t.Errorf("the policy edit restarted or replaced pods: %s -> %s", names, podNames(after))
	}

	// A bad policy (past the schema, refused by extauthz) keeps them serving; helm
	// test catches it; a rollback restores it.
	writeValues(policy(`{"name":"broken","paths":["/x/{id}"],"owner":{"param":"user_id","claim":"uuid"}},`))
	run(t, 3*time.Minute, helm, "upgrade", release, chart, "-n", ns, "-f", valuesFile, "--wait", "--timeout", "2m")
	testkit.Eventually(t, "PolicyRejected event", 60*time.Second, func() bool {
		return strings.Contains(k(t, "get", "events", "--field-selector", "reason=PolicyRejected", "-o", "name"), "event")
	})
	if c := get("/api/" + uuidA + "/tasks"); c != 200 {
		t.Errorf("after a bad policy: %d, want the old policy's 200", c)
	}
	if out, err := try(3*time.Minute, helm, "test", release, "-n", ns, "--timeout", "90s"); err == nil {
		t.Errorf("helm test passed a policy extauthz refuses:\n%s", out)
	}
	run(t, 3*time.Minute, helm, "rollback", release, "-n", ns, "--wait", "--timeout", "2m")
	for _, p := range podsOf(t) {
		if !p.ready {
			t.Errorf("pod %s not ready after a bad policy and a rollback", p.name)
		}
	}

	// Under load: a rolling update, then a drain.
	load := startLoad(get, "/api/"+uuidA+"/tasks")
	t1 := time.Now()
	k(t, "rollout", "restart", "deploy/"+release)
	k(t, "rollout", "status", "deploy/"+release, "--timeout", "3m")
	rolled := time.Since(t1)
	// On through the old pods' shutdown (readiness off, --shutdown-delay, then a
	// graceful stop that moves Envoy's connection to a new pod), until they are gone.
	testkit.Eventually(t, "the old pods gone", 2*time.Minute, func() bool {
		return strings.Count(k(t, "get", "pods", "-l", "app.kubernetes.io/component=authorizer", "-o", "name"), "pod/") == 2
	})
	time.Sleep(2 * time.Second)
	gone := time.Since(t1)
	sent, failed, first := load.stop()
	t.Logf("rolling update under load: %d requests, %d failed; rollout complete after %s, old pods gone after %s", sent, failed, rolled.Round(time.Second), gone.Round(time.Second))
	if failed != 0 || sent == 0 {
		t.Errorf("rolling update: %d of %d requests failed (first: %s)", failed, sent, first)
	}

	// One node: the drain evicts what the PDB allows (one replica); the last one
	// stays and serves, and the drain gives up. Then the node comes back.
	load = startLoad(get, "/api/"+uuidA+"/tasks")
	node := strings.TrimSpace(run(t, time.Minute, kubectl, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"))
	drainOut, drainErr := try(2*time.Minute, kubectl, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout", "25s", "--pod-selector", "app.kubernetes.io/name=extauthz")
	time.Sleep(3 * time.Second)
	sent, failed, first = load.stop()
	run(t, time.Minute, kubectl, "uncordon", node)
	t.Logf("node drain under load: %d requests, %d failed; drain: %v\n%s", sent, failed, drainErr, lastLines(drainOut, 4))
	if failed != 0 || sent == 0 {
		t.Errorf("drain: %d of %d requests failed (first: %s)", failed, sent, first)
	}
	if !strings.Contains(drainOut, "evicted") || !strings.Contains(drainOut, "disruption budget") {
		t.Errorf("the drain did not evict one replica and stop at the PDB:\n%s", drainOut)
	}
	testkit.Eventually(t, "two replicas Ready again after uncordon", 2*time.Minute, func() bool {
		ps := podsOf(t)
		n := 0
		for _, p := range ps {
			if p.ready {
				n++
			}
		}
		return n == 2
	})
}

// fragmentsOnARealNode: a team's labelled ConfigMap opens /probe on the host the
// base delegates to it, through the real Envoy; a second team claiming that host
// is refused with a Warning Event on its own ConfigMap, and the first keeps it.
func fragmentsOnARealNode(t *testing.T, dir, envoyURL string) {
	t.Helper()
	getHost := func(host, path string) int { return status(envoyURL+path, host, "") }
	if c := getHost("team-a.example.com", "/probe"); c != 403 {
		t.Fatalf("/probe before any fragment: %d, want 403", c)
	}
	apply := func(team, doc string) {
		f := filepath.Join(dir, team+"-fragment.json")
		cm, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "policy", "namespace": team, "labels": map[string]string{"extauthz.io/policy-fragment": "true"}},
			"data":     map[string]string{"policy.yaml": doc}})
		if err := os.WriteFile(f, cm, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, time.Minute, kubectl, "apply", "-f", f)
	}
	apply("team-a", "hosts: [team-a.example.com]\nrules: [{name: probe, paths: [/probe], public: true}]\n")
	t0 := time.Now()
	testkit.Eventually(t, "team-a's fragment applied", 30*time.Second, func() bool { return getHost("team-a.example.com", "/probe") == 200 })
	t.Logf("a fragment ConfigMap took effect through the real Envoy %s after kubectl apply", time.Since(t0).Round(100*time.Millisecond))
	if c := getHost("team-b.example.com", "/probe"); c != 403 {
		t.Errorf("/probe on another host: %d, want 403", c)
	}
	apply("team-b", "hosts: [TEAM-A.example.com]\nrules: [{name: probe, paths: [/probe]}]\n")
	testkit.Eventually(t, "team-b's claim refused with an Event", 30*time.Second, func() bool {
		out, _ := try(time.Minute, kubectl, "-n", "team-b", "get", "events", "--field-selector", "reason=PolicyRejected,involvedObject.name=policy", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, `not delegated to namespace \"team-b\"`) || strings.Contains(out, `not delegated to namespace "team-b"`)
	})
	if c := getHost("team-a.example.com", "/probe"); c != 200 {
		t.Errorf("team-a's host after team-b's claim: %d, want 200", c)
	}
	if out := run(t, time.Minute, kubectl, "-n", "team-a", "get", "events", "--field-selector", "reason=PolicyApplied", "-o", "name"); !strings.Contains(out, "event") {
		t.Errorf("no PolicyApplied event on team-a's fragment")
	}
}

// status GETs url (with Host host and a Bearer token, when given) and returns
// the status, 0 when there is no answer.
func status(url, host, token string) int {
	req, _ := http.NewRequest("GET", url, nil)
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type pod struct {
	name         string
	ready        bool
	uid          int64
	readOnlyRoot bool
	restarts     int
}

func podsOf(t *testing.T) []pod {
	t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				SecurityContext struct {
					RunAsUser int64 `json:"runAsUser"`
				} `json:"securityContext"`
				Containers []struct {
					SecurityContext struct {
						ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem"`
					} `json:"securityContext"`
				} `json:"containers"`
			} `json:"spec"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
				Containers []struct {
					RestartCount int `json:"restartCount"`
				} `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(k(t, "get", "pods", "-l", "app.kubernetes.io/name=extauthz,app.kubernetes.io/component=authorizer", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	var out []pod
	for _, it := range list.Items {
		if it.Metadata.DeletionTimestamp != nil {
			continue
		}
		p := pod{name: it.Metadata.Name, uid: it.Spec.SecurityContext.RunAsUser}
		if len(it.Spec.Containers) > 0 {
			p.readOnlyRoot = it.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem
		}
		for _, c := range it.Status.Conditions {
			p.ready = p.ready || c.Type == "Ready" && c.Status == "True"
		}
		for _, c := range it.Status.Containers {
			p.restarts += c.RestartCount
		}
		out = append(out, p)
	}
	return out
}

func podNames(ps []pod) string {
	var n []string
	for _, p := range ps {
		n = append(n, p.name)
	}
	return strings.Join(n, ",")
}

type loadRun struct {
	sent, failed atomic.Int64
	first        atomic.Value
	done         chan struct{}
	wg           sync.WaitGroup
}

// startLoad sends the request from 4 clients until stopped (at most 3 minutes and
// 200k requests).
func startLoad(get func(string) int, path string) *loadRun {
	l := &loadRun{done: make(chan struct{})}
	deadline := time.Now().Add(3 * time.Minute)
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for time.Now().Before(deadline) && l.sent.Load() < 200000 {
				select {
				case <-l.done:
					return
				default:
				}
				l.sent.Add(1)
				if c := get(path); c != 200 {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, fmt.Sprintf("status %d at %s", c, time.Now().Format(time.StampMilli)))
				}
			}
		}()
	}
	return l
}

func (l *loadRun) stop() (sent, failed int64, first string) {
	close(l.done)
	l.wg.Wait()
	f, _ := l.first.Load().(string)
	return l.sent.Load(), l.failed.Load(), f
}

func fastBackend(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
