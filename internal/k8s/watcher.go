// Package k8s watches the policy ConfigMap through the Kubernetes API and records
// what became of each update as Events on it.
package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/betterauth-extauthz/extauthz/internal/reload"
)

// Event reasons recorded on the ConfigMap.
const (
	ReasonApplied  = "PolicyApplied"
	ReasonRejected = "PolicyRejected"
	ReasonDeleted  = "PolicyDeleted"
	// ReasonLint marks a policy that was applied but looks wrong (one Event a warning).
	ReasonLint = "PolicyLint"
)

// DefaultKey is the ConfigMap key holding the policy.
const DefaultKey = "policy.yaml"

// Watcher applies one ConfigMap's policy key on every change.
type Watcher struct {
	Namespace, Name string
	// Key in the ConfigMap's data; DefaultKey when empty.
	Key      string
	Reloader *reload.Reloader
	Log      *slog.Logger
	// Component names the event source (default "extauthz").
	Component string
}

// RESTConfig returns the API server config: from kubeconfig when given, else
// in-cluster (the service account the Pod runs as).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// Run watches until ctx ends. The informer lists and watches exactly one object (a
// field selector on metadata.name), which is what lets the Role name the ConfigMap
// in resourceNames instead of granting every ConfigMap in the namespace.
func (w *Watcher) Run(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if w.Key == "" {
		w.Key = DefaultKey
	}
	if w.Log == nil {
		w.Log = slog.Default()
	}
	component := w.Component
	if component == "" {
		component = "extauthz"
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events(w.Namespace)})
	defer broadcaster.Shutdown()
	rec := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute,
		informers.WithNamespace(w.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "metadata.name=" + w.Name
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	source := "configmap:" + w.Namespace + "/" + w.Name
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.apply(ctx, rec, source, obj) },
		UpdateFunc: func(_, obj any) { w.apply(ctx, rec, source, obj) },
		DeleteFunc: func(obj any) {
			w.Log.Warn("policy ConfigMap deleted; the last policy stays in force", "source", source, "hash", w.Reloader.Hash())
			if cm, ok := toConfigMap(obj); ok {
				rec.Eventf(cm, corev1.EventTypeWarning, ReasonDeleted,
					"ConfigMap deleted; extauthz keeps the last policy (hash %s)", w.Reloader.Hash())
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

func (w *Watcher) apply(ctx context.Context, rec record.EventRecorder, source string, obj any) {
	cm, ok := toConfigMap(obj)
	if !ok {
		return
	}
	doc, ok := cm.Data[w.Key]
	if !ok {
		err := fmt.Errorf("ConfigMap has no key %q", w.Key)
		w.Reloader.Metrics.PolicyRejected(source)
		w.Log.Error("policy rejected; the previous policy stays in force", "source", source, "error", err.Error())
		rec.Eventf(cm, corev1.EventTypeWarning, ReasonRejected, "%v; keeping policy %s", err, w.Reloader.Hash())
		return
	}
	res, hash, err := w.Reloader.Apply(ctx, source, []byte(doc))
	switch res {
	case reload.Applied:
		rec.Eventf(cm, corev1.EventTypeNormal, ReasonApplied, "policy %s applied (resourceVersion %s)", hash, cm.ResourceVersion)
		for _, warning := range w.Reloader.Warnings() {
			rec.Eventf(cm, corev1.EventTypeWarning, ReasonLint, "policy %s: %s", hash, warning)
		}
	case reload.Rejected:
		rec.Eventf(cm, corev1.EventTypeWarning, ReasonRejected, "policy rejected, keeping %s: %v", orNone(w.Reloader.Hash()), err)
	}
}

func toConfigMap(obj any) (*corev1.ConfigMap, bool) {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return o, true
	case cache.DeletedFinalStateUnknown:
		cm, ok := o.Obj.(*corev1.ConfigMap)
		return cm, ok
	}
	return nil, false
}

func orNone(h string) string {
	if h == "" {
		return "none (not ready)"
	}
	return h
}
