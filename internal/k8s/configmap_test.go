//go:build envtest

package k8s_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/betterauth-extauthz/extauthz/internal/k8s"
	"github.com/betterauth-extauthz/extauthz/internal/reload"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
)

func TestTighteningTakesEffectWithin2s(t *testing.T) {
	ns := namespace(t)
	putPolicy(t, ns, "policy", policy(1))
	in := watch(t, admin, ns, "policy")
	testkit.Eventually(t, "ready", 10*time.Second, func() bool { return in.e.Ready() && in.probe().Allow })

	var took []time.Duration
	for i := range 5 {
		doc := tightened(i + 2)
		if i%2 == 1 {
			doc = policy(i + 2)
		}
		start := time.Now()
		putPolicy(t, ns, "policy", doc)
		want := i%2 == 1
		testkit.Eventually(t, "update applied", 2*time.Second, func() bool { return in.probe().Allow == want })
		took = append(took, time.Since(start))
	}
	t.Logf("ConfigMap update to changed decision (5 updates): %v", took)
	testkit.Eventually(t, "PolicyApplied event", 5*time.Second, func() bool { return len(events(t, ns, "policy", k8s.ReasonApplied)) > 0 })
}

func TestInvalidUpdateIsRefused(t *testing.T) {
	ns := namespace(t)
	putPolicy(t, ns, "policy", policy(1))
	in := watch(t, admin, ns, "policy")
	testkit.Eventually(t, "ready", 10*time.Second, func() bool { return in.probe().Allow })
	hash := in.r.Hash()

	putPolicy(t, ns, "policy", invalid)
	testkit.Eventually(t, "PolicyRejected event", 5*time.Second, func() bool { return len(events(t, ns, "policy", k8s.ReasonRejected)) > 0 })
	ev := events(t, ns, "policy", k8s.ReasonRejected)[0]
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, `rules[0] "x": when`) {
		t.Fatalf("event %s: %q", ev.Type, ev.Message)
	}
	if got := testutil.ToFloat64(in.m.PolicyReloadCounter("configmap:"+ns+"/policy", "rejected")); got != 1 {
		t.Fatalf("rejected counter %v", got)
	}
	if d := in.probe(); !d.Allow || d.Rule != "gen-1" || in.r.Hash() != hash {
		t.Fatalf("old policy not in force: %+v", d)
	}

	// A ConfigMap without the policy key is refused the same way.
	cm, _ := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "policy", metav1.GetOptions{})
	cm.Data = map[string]string{"other.yaml": "x"}
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "second rejection", 5*time.Second, func() bool {
		return testutil.ToFloat64(in.m.PolicyReloadCounter("configmap:"+ns+"/policy", "rejected")) == 2
	})
	if !in.probe().Allow {
		t.Fatal("missing key changed decisions")
	}

	// Deleting the ConfigMap keeps the last policy: never allow-all, never deny-all.
	if err := cs.CoreV1().ConfigMaps(ns).Delete(context.Background(), "policy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "PolicyDeleted event", 5*time.Second, func() bool { return len(events(t, ns, "policy", k8s.ReasonDeleted)) > 0 })
	if d := in.probe(); !d.Allow || d.Rule != "gen-1" {
		t.Fatalf("after delete: %+v", d)
	}
}

// TestLintWarningsBecomeEvents: a policy that applies but looks wrong (an owner rule
// with default: authenticated) is in force, and each warning is a Warning Event.
func TestLintWarningsBecomeEvents(t *testing.T) {
	ns := namespace(t)
	doc := fmt.Sprintf(`issuers: [{betterAuthURL: %s}]
rules: [{name: own-tasks, paths: ['/api/{user_id}/tasks'], owner: {param: user_id, claim: uuid}}, {name: probe, paths: [/probe], public: true}]
default: authenticated
`, jwksURL)
	putPolicy(t, ns, "policy", doc)
	in := watch(t, admin, ns, "policy")
	testkit.Eventually(t, "ready", 10*time.Second, func() bool { return in.probe().Allow })
	testkit.Eventually(t, "PolicyLint event", 5*time.Second, func() bool { return len(events(t, ns, "policy", k8s.ReasonLint)) > 0 })
	ev := events(t, ns, "policy", k8s.ReasonLint)[0]
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, `rule "own-tasks" checks ownership, but default: authenticated`) {
		t.Fatalf("event %s: %q", ev.Type, ev.Message)
	}
}

// TestBurst: 50 updates in a row (some invalid) while Checks run concurrently. Every
// decision must come from one whole policy version, versions only move forward, and
// the last valid update ends in force.
func TestBurst(t *testing.T) {
	ns := namespace(t)
	putPolicy(t, ns, "policy", policy(0))
	in := watch(t, admin, ns, "policy")
	testkit.Eventually(t, "ready", 10*time.Second, func() bool { return in.probe().Allow })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var checks, mixed, backwards atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for ctx.Err() == nil {
				d := in.probe()
				checks.Add(1)
				var rule, hdr int
				fmt.Sscanf(d.Rule, "gen-%d", &rule)
				// One identity header, then the three method-override headers and
				// x-auth-method.
				if len(d.RemoveHeaders) != 5 {
					mixed.Add(1)
					continue
				}
				fmt.Sscanf(d.RemoveHeaders[0], "x-gen-%d", &hdr)
				if rule != hdr || !d.Allow {
					mixed.Add(1)
				}
				if rule < last {
					backwards.Add(1)
				}
				last = rule
			}
		}()
	}
	lastValid := 0
	for gen := 1; gen <= 50; gen++ {
		if gen%7 == 0 {
			putPolicy(t, ns, "policy", invalid)
			continue
		}
		putPolicy(t, ns, "policy", policy(gen))
		lastValid = gen
	}
	testkit.Eventually(t, "last valid version in force", 10*time.Second, func() bool { return in.probe().Rule == fmt.Sprintf("gen-%d", lastValid) })
	time.Sleep(200 * time.Millisecond) // let the checkers see the final state too
	cancel()
	wg.Wait()
	t.Logf("burst: 50 updates (7 invalid), %d concurrent checks, %d mixed, %d backwards", checks.Load(), mixed.Load(), backwards.Load())
	if mixed.Load() != 0 || backwards.Load() != 0 {
		t.Fatalf("%d decisions from a mixed policy, %d that went backwards", mixed.Load(), backwards.Load())
	}
}

func TestRestart(t *testing.T) {
	ns := namespace(t)
	putPolicy(t, ns, "policy", policy(1))
	in := watch(t, admin, ns, "policy")
	testkit.Eventually(t, "ready with a valid ConfigMap", 10*time.Second, func() bool { return in.e.Ready() })

	putPolicy(t, ns, "policy", invalid)
	in2 := watch(t, admin, ns, "policy") // a replica starting now
	testkit.Eventually(t, "rejection seen", 10*time.Second, func() bool {
		return testutil.ToFloat64(in2.m.PolicyReloadCounter("configmap:"+ns+"/policy", "rejected")) == 1
	})
	if in2.e.Ready() {
		t.Fatal("ready without a valid policy")
	}
	if d := in2.probe(); d.Allow || d.Reason != "not_ready" {
		t.Fatalf("decision without a valid policy: %+v", d)
	}
}

// TestShippedRoleIsEnoughAndNoMore applies deploy/kustomize/base/rbac.yaml and runs
// the watcher as that service account, then checks what else it may do.
func TestShippedRoleIsEnoughAndNoMore(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	applyRBAC(t, ns, filepath.Join("..", "..", "deploy", "kustomize", "base", "rbac.yaml"))
	putPolicy(t, ns, "extauthz-policy", policy(1))
	putPolicy(t, ns, "other", policy(2))

	sa := rest.CopyConfig(admin)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":extauthz"}
	in := watch(t, sa, ns, "extauthz-policy")
	testkit.Eventually(t, "policy applied as the service account", 10*time.Second, func() bool { return in.probe().Allow })
	putPolicy(t, ns, "extauthz-policy", tightened(3))
	testkit.Eventually(t, "update seen as the service account", 5*time.Second, func() bool { return !in.probe().Allow })
	testkit.Eventually(t, "events written as the service account", 5*time.Second, func() bool { return len(events(t, ns, "extauthz-policy", k8s.ReasonApplied)) > 0 })

	saCS := kubernetes.NewForConfigOrDie(sa)
	forbidden := map[string]error{}
	_, forbidden["get another ConfigMap"] = saCS.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{})
	_, forbidden["list all ConfigMaps"] = saCS.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	_, forbidden["watch all ConfigMaps"] = saCS.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	cm, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "extauthz-policy", metav1.GetOptions{})
	_, forbidden["update its ConfigMap"] = saCS.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	forbidden["delete its ConfigMap"] = saCS.CoreV1().ConfigMaps(ns).Delete(ctx, "extauthz-policy", metav1.DeleteOptions{})
	_, forbidden["list Secrets"] = saCS.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	_, forbidden["get the ConfigMap in another namespace"] = saCS.CoreV1().ConfigMaps("default").Get(ctx, "extauthz-policy", metav1.GetOptions{})
	_, forbidden["list Events"] = saCS.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
}

// TestUnreadableConfigMapFailsTheSource: a service account that may not read the
// ConfigMap (no Role bound) makes the source fail within SyncTimeout, so serve
// exits and the Pod shows why, instead of never becoming ready.
func TestUnreadableConfigMapFailsTheSource(t *testing.T) {
	ns := namespace(t)
	putPolicy(t, ns, "policy", policy(1))
	sa := rest.CopyConfig(admin)
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":nobody"}
	src, err := k8s.NewConfigMap(k8s.Config{Namespace: ns, Name: "policy", REST: sa, SyncTimeout: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = src.Run(context.Background(), func(context.Context, reload.Update) reload.Outcome {
		t.Error("a document arrived without permission to read it")
		return reload.Outcome{}
	})
	if err == nil || !strings.Contains(err.Error(), "could not list it") {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("failed after %s, want about the 2s SyncTimeout", took)
	}
}
