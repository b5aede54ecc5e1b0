//go:build envtest

package k8s_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/betterauth-extauthz/extauthz/internal/engine"
	"github.com/betterauth-extauthz/extauthz/internal/k8s"
	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
)

const fragmentLabel = "extauthz.io/policy-fragment"

// fragmentBase delegates <ns>.example.com to each namespace.
func fragmentBase(namespaces []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "issuers: [{betterAuthURL: %s}]\nrules: [{name: health, paths: [/healthz], public: true}]\ndefault: deny\nfragments:\n", jwksURL)
	for _, ns := range namespaces {
		fmt.Fprintf(&b, "  %s: [%s.example.com]\n", ns, ns)
	}
	return b.String()
}

// fragmentDoc claims host and opens /probe there, under the rule name probe.
func fragmentDoc(host string) string {
	return fmt.Sprintf("hosts: [%s]\nrules: [{name: probe, paths: [/probe], public: true}]\n", host)
}

func putFragment(t *testing.T, ns, name, doc string, labelled bool) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{k8s.DefaultKey: doc}}
	if labelled {
		cm.Labels = map[string]string{fragmentLabel: "true"}
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type fragmentInstance struct {
	e *engine.Engine
	r *reload.Reloader
	m *metrics.Recorder
}

// watchFragments runs an engine with the base policy (delegating <ns>.example.com
// to each of delegated) and a fragment watcher as cfg's user; namespaces empty:
// all.
func watchFragments(t *testing.T, cfg *rest.Config, delegated []string, namespaces ...string) *fragmentInstance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := replica(ctx, t)
	r, log := in.r, in.log
	src, err := k8s.NewFragments(k8s.FragmentsConfig{Selector: fragmentLabel + "=true", Namespaces: namespaces, REST: cfg, Log: log, SyncTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := src.Run(ctx, r); err != nil {
			t.Error(err)
		}
	}()
	// The base arrives after the fragments' first list, as it may in a Pod.
	time.Sleep(300 * time.Millisecond)
	if out := r.Apply(ctx, reload.Update{Source: "test", Doc: []byte(fragmentBase(delegated))}); out.Result != reload.Applied {
		t.Fatalf("base: %+v", out)
	}
	t.Cleanup(func() { cancel(); <-stopped })
	return &fragmentInstance{e: in.e, r: r, m: in.m}
}

func (in *fragmentInstance) probe(host string) engine.Decision {
	return in.e.Decide(context.Background(), &engine.Request{Method: "GET", Host: host, Path: "/probe"})
}

// TestFragmentsPerNamespace: two teams' fragments apply, each on its own host; a
// fragment claiming a host not delegated to its namespace, one claiming a host an
// older fragment of its namespace owns, and an invalid one are rejected with a
// Warning Event on their own ConfigMap and change nothing else; an unlabelled
// ConfigMap is ignored; deleting the owner hands its host to the next claimant of
// its namespace.
func TestFragmentsPerNamespace(t *testing.T) {
	a, b, thief, broken, unlabelled := namespace(t), namespace(t), namespace(t), namespace(t), namespace(t)
	hostA, hostB := a+".example.com", b+".example.com"
	putFragment(t, a, "policy", fragmentDoc(hostA), true)
	putFragment(t, b, "policy", fragmentDoc(hostB), true)
	putFragment(t, unlabelled, "policy", fragmentDoc(unlabelled+".example.com"), false)
	in := watchFragments(t, admin, []string{a, b, thief, broken, unlabelled})
	testkit.Eventually(t, "both fragments applied", 10*time.Second, func() bool {
		return in.probe(hostA).Rule == a+"/policy/probe" && in.probe(hostB).Rule == b+"/policy/probe"
	})
	testkit.Eventually(t, "PolicyApplied events", 5*time.Second, func() bool {
		return len(events(t, a, "policy", k8s.ReasonApplied)) > 0 && len(events(t, b, "policy", k8s.ReasonApplied)) > 0
	})
	if d := in.probe(unlabelled + ".example.com"); d.Allow {
		t.Fatalf("an unlabelled ConfigMap's fragment applied: %+v", d)
	}

	time.Sleep(1100 * time.Millisecond) // a later creationTimestamp (one-second resolution)
	putFragment(t, thief, "policy", fragmentDoc(hostA), true)
	putFragment(t, a, "policy-2", fragmentDoc(hostA), true)
	putFragment(t, broken, "policy", "hosts: ["+broken+".example.com]\nrules: [{name: probe, pahts: [/probe]}]\n", true)
	for _, tc := range []struct{ ns, name, want string }{
		{thief, "policy", "not delegated to namespace"},
		{a, "policy-2", "already owned by fragment " + a + "/policy"},
		{broken, "policy", "pahts"},
	} {
		testkit.Eventually(t, "PolicyRejected on "+tc.ns+"/"+tc.name, 10*time.Second, func() bool { return len(events(t, tc.ns, tc.name, k8s.ReasonRejected)) > 0 })
		ev := events(t, tc.ns, tc.name, k8s.ReasonRejected)[0]
		if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, tc.want) {
			t.Errorf("%s/%s: event %s %q, want a Warning mentioning %q", tc.ns, tc.name, ev.Type, ev.Message, tc.want)
		}
	}
	if da, db := in.probe(hostA), in.probe(hostB); da.Rule != a+"/policy/probe" || db.Rule != b+"/policy/probe" {
		t.Fatalf("a rejected fragment changed the others: %+v %+v", da, db)
	}
	for id, want := range map[string]float64{a + "/policy": 1, b + "/policy": 1, thief + "/policy": 0, a + "/policy-2": 0, broken + "/policy": 0} {
		if got := fragmentGauge(t, in.m, id); got != want {
			t.Errorf("policy_fragment_applied{fragment=%q} = %v, want %v", id, got, want)
		}
	}
	sts, _ := in.r.FragmentStatuses()
	if len(sts) != 5 {
		t.Fatalf("statuses %+v", sts)
	}

	// A bad edit of an applied fragment keeps its last good version in force.
	cm, err := cs.CoreV1().ConfigMaps(b).Get(context.Background(), "policy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[k8s.DefaultKey] = "hosts: [" + hostB + "]\nrules: [{name: probe, paths: [/probe], public: ture}]\n"
	if _, err := cs.CoreV1().ConfigMaps(b).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "PolicyRejected on the bad edit", 10*time.Second, func() bool { return len(events(t, b, "policy", k8s.ReasonRejected)) > 0 })
	if d := in.probe(hostB); !d.Allow || d.Rule != b+"/policy/probe" {
		t.Fatalf("a bad edit took the last good version out: %+v", d)
	}

	if err := cs.CoreV1().ConfigMaps(a).Delete(context.Background(), "policy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the host passes to the next claimant", 10*time.Second, func() bool { return in.probe(hostA).Rule == a+"/policy-2/probe" })
	for _, r := range in.e.Current().Policy.Rules {
		if strings.HasPrefix(r.Name, a+"/policy/") {
			t.Fatalf("the deleted fragment's rule %s is still in force", r.Name)
		}
	}
	testkit.Eventually(t, "PolicyApplied on the new owner", 5*time.Second, func() bool { return len(events(t, a, "policy-2", k8s.ReasonApplied)) > 0 })
	if d := in.probe(thief + ".example.com"); d.Allow {
		t.Fatalf("probe on a host nobody claims: %+v", d)
	}
}

func fragmentGauge(t *testing.T, m *metrics.Recorder, id string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.FragmentGauge(id))
}

// TestFragmentsInListedNamespacesOnly: with namespaces listed, a labelled
// ConfigMap elsewhere is not watched.
func TestFragmentsInListedNamespacesOnly(t *testing.T) {
	in1, out := namespace(t), namespace(t)
	putFragment(t, in1, "policy", fragmentDoc(in1+".example.com"), true)
	putFragment(t, out, "policy", fragmentDoc(out+".example.com"), true)
	in := watchFragments(t, admin, []string{in1, out}, in1)
	testkit.Eventually(t, "listed namespace applied", 10*time.Second, func() bool { return in.probe(in1 + ".example.com").Allow })
	time.Sleep(500 * time.Millisecond)
	if d := in.probe(out + ".example.com"); d.Allow {
		t.Fatalf("a fragment outside the listed namespaces applied: %+v", d)
	}
}

// TestShippedFragmentRoleIsEnoughAndNoMore: the kustomize component's ClusterRole
// lets the watcher read fragments and write Events, and nothing more.
func TestShippedFragmentRoleIsEnoughAndNoMore(t *testing.T) {
	ns, team := namespace(t), namespace(t)
	ctx := context.Background()
	applyRBAC(t, ns, filepath.Join("..", "..", "deploy", "kustomize", "components", "fragments", "rbac.yaml"))
	putFragment(t, team, "policy", fragmentDoc(team+".example.com"), true)
	sa := rest.CopyConfig(admin)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":extauthz"}
	in := watchFragments(t, sa, []string{team})
	testkit.Eventually(t, "fragment applied as the service account", 10*time.Second, func() bool { return in.probe(team + ".example.com").Allow })
	testkit.Eventually(t, "event written as the service account", 5*time.Second, func() bool { return len(events(t, team, "policy", k8s.ReasonApplied)) > 0 })

	saCS := kubernetes.NewForConfigOrDie(sa)
	cm, _ := cs.CoreV1().ConfigMaps(team).Get(ctx, "policy", metav1.GetOptions{})
	forbidden := map[string]error{}
	_, forbidden["update a fragment"] = saCS.CoreV1().ConfigMaps(team).Update(ctx, cm, metav1.UpdateOptions{})
	forbidden["delete a fragment"] = saCS.CoreV1().ConfigMaps(team).Delete(ctx, "policy", metav1.DeleteOptions{})
	_, forbidden["list Secrets"] = saCS.CoreV1().Secrets(team).List(ctx, metav1.ListOptions{})
	_, forbidden["list Events"] = saCS.CoreV1().Events(team).List(ctx, metav1.ListOptions{})
	_, forbidden["list Pods"] = saCS.CoreV1().Pods(team).List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
}

// TestFragmentBurst: 50 fragment updates, in two namespaces at once (every
// seventh invalid), while checks run: every check sees one whole version of each
// fragment, never no version (a rejected update keeps the last good one), never
// an older one than it saw before; the last valid versions end in force.
func TestFragmentBurst(t *testing.T) {
	a, b := namespace(t), namespace(t)
	doc := func(ns string, gen int) string {
		return fmt.Sprintf("hosts: [%s.example.com]\nrules: [{name: gen-%d, paths: [/probe], public: true}]\n", ns, gen)
	}
	putFragment(t, a, "policy", doc(a, 0), true)
	putFragment(t, b, "policy", doc(b, 0), true)
	in := watchFragments(t, admin, []string{a, b})
	testkit.Eventually(t, "both applied", 10*time.Second, func() bool { return in.probe(a+".example.com").Allow && in.probe(b+".example.com").Allow })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var checks, gaps, backwards atomic.Int64
	for _, ns := range []string{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for ctx.Err() == nil {
				d := in.probe(ns + ".example.com")
				checks.Add(1)
				gen := -1
				if _, err := fmt.Sscanf(d.Rule, ns+"/policy/gen-%d", &gen); err != nil || !d.Allow {
					gaps.Add(1)
					continue
				}
				if gen < last {
					backwards.Add(1)
				}
				last = gen
			}
		}()
	}
	lastValid := map[string]int{}
	var writers sync.WaitGroup
	for _, ns := range []string{a, b} {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for gen := 1; gen <= 25; gen++ {
				d := doc(ns, gen)
				if gen%7 == 0 {
					d = "hosts: [" + ns + ".example.com]\nrules: [{name: gen, pahts: [/probe]}]\n"
				}
				cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "policy", metav1.GetOptions{})
				if err == nil {
					cm.Data[k8s.DefaultKey] = d
					_, err = cs.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		lastValid[ns] = 25
	}
	writers.Wait()
	for ns, gen := range lastValid {
		testkit.Eventually(t, "last valid version in force in "+ns, 10*time.Second, func() bool {
			return in.probe(ns+".example.com").Rule == fmt.Sprintf("%s/policy/gen-%d", ns, gen)
		})
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("fragment burst: 50 updates in 2 namespaces (6 invalid), %d concurrent checks, %d without a version, %d backwards", checks.Load(), gaps.Load(), backwards.Load())
	if gaps.Load() != 0 || backwards.Load() != 0 {
		t.Fatalf("%d checks saw no version of a fragment, %d an older one", gaps.Load(), backwards.Load())
	}
}
