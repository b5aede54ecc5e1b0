//go:build envtest

package k8s_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/k8s"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

var (
	admin   *rest.Config
	cs      *kubernetes.Clientset
	jwksURL string
	nsSeq   atomic.Int64
)

// TestMain starts a real kube-apiserver and etcd (built from the Go module proxy by
// hack/k8s-tools.sh; `make unit` sets KUBEBUILDER_ASSETS).
func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "internal/k8s: KUBEBUILDER_ASSETS is not set; run `make unit` (it builds kube-apiserver and etcd) or export KUBEBUILDER_ASSETS=$(hack/k8s-tools.sh)")
		os.Exit(1)
	}
	key := tokentest.NewKey(jwa.EdDSA, "k1")
	jwks := tokentest.StartJWKSServer(tokentest.JWKS(key))
	jwksURL = jwks.URL
	env := &envtest.Environment{}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "internal/k8s: kube-apiserver and etcd up in %s\n", time.Since(start).Round(time.Millisecond))
	admin = cfg
	cs = kubernetes.NewForConfigOrDie(cfg)
	code := m.Run()
	_ = env.Stop()
	jwks.Close()
	os.Exit(code)
}

// policy version gen: one public rule and one identity header, both named after
// gen, so a decision shows which version (and whether one whole version) made it.
func policy(gen int) string {
	return fmt.Sprintf(`issuers: [{betterAuthURL: %s}]
identity: {headers: {x-gen-%d: sub}}
rules: [{name: gen-%d, paths: [/probe], public: true}]
`, jwksURL, gen, gen)
}

// tightened: /probe needs a token now.
func tightened(gen int) string {
	return strings.Replace(policy(gen), ", public: true", "", 1)
}

const invalid = "issuers: [{betterAuthURL: https://a}]\nrules: [{name: x, paths: [/probe], when: 'claims.role =='}]\n"

func namespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("t%d", nsSeq.Add(1))
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func putPolicy(t *testing.T, ns, name, doc string) {
	t.Helper()
	ctx := context.Background()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{k8s.DefaultKey: doc},
		}, metav1.CreateOptions{})
	} else if err == nil {
		cm.Data = map[string]string{k8s.DefaultKey: doc}
		_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

type instance struct {
	e       *engine.Engine
	r       *reload.Reloader
	m       *metrics.Recorder
	log     *slog.Logger
	stop    context.CancelFunc
	stopped chan struct{}
}

// replica is a fresh engine and Reloader, as one extauthz Pod has, until ctx ends.
func replica(ctx context.Context, t *testing.T) *instance {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := engine.New(engine.Config{Metrics: m, Log: log})
	r, err := reload.New(reload.Config{Engine: e, Pool: jwkscache.NewPool(ctx, jwkscache.PoolConfig{Metrics: m}), Metrics: m, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return &instance{e: e, r: r, m: m, log: log}
}

// applyRBAC creates in ns the service account extauthz and the RBAC objects of a
// shipped manifest (a Role and RoleBinding, or a ClusterRole and
// ClusterRoleBinding, which get ns in their names and bind extauthz in ns).
func applyRBAC(t *testing.T, ns, file string) {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "extauthz"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ServiceAccount":
			continue
		case "Role":
			var o rbacv1.Role
			mustYAML(t, doc, &o)
			_, err = cs.RbacV1().Roles(ns).Create(ctx, &o, metav1.CreateOptions{})
		case "RoleBinding":
			var o rbacv1.RoleBinding
			mustYAML(t, doc, &o)
			_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRole":
			var o rbacv1.ClusterRole
			mustYAML(t, doc, &o)
			o.Name += "-" + ns
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			mustYAML(t, doc, &o)
			o.Name += "-" + ns
			o.RoleRef.Name += "-" + ns
			o.Subjects[0].Namespace = ns // the kustomize base's namespace, here the test's
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected kind %q in %s", meta.Kind, file)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// watch runs a fresh engine + watcher (a "replica") on ns/name as cfg's user.
func watch(t *testing.T, cfg *rest.Config, ns, name string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := replica(ctx, t)
	in.stop, in.stopped = cancel, make(chan struct{})
	src, err := k8s.NewConfigMap(k8s.Config{Namespace: ns, Name: name, REST: cfg, Log: in.log})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(in.stopped)
		if err := in.r.Run(ctx, src); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-in.stopped })
	return in
}

func (in *instance) probe() engine.Decision {
	return in.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: "api.example.com", Path: "/probe"})
}

func events(t *testing.T, ns, name, reason string) []corev1.Event {
	t.Helper()
	list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name + ",reason=" + reason,
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func mustYAML(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
}
