// Package k8s watches the policy ConfigMap through the Kubernetes API and records
// what became of each update as Events on it.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Config says which ConfigMap to watch and how.
type Config struct {
	// Namespace and Name of the ConfigMap; both required.
	Namespace, Name string
	// Key in the ConfigMap's data; DefaultKey when empty.
	Key string
	// REST reaches the API server (see RESTConfig); required.
	REST *rest.Config
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Component names the event source; "extauthz" when empty.
	Component string
	// SyncTimeout bounds the first list of the ConfigMap; DefaultSyncTimeout when
	// zero. Past it, Run fails: the API server cannot be reached, or RBAC forbids
	// reading the ConfigMap, and a Pod that says so beats one that is never ready.
	SyncTimeout time.Duration
}

// DefaultSyncTimeout bounds the first list of the ConfigMap.
const DefaultSyncTimeout = 30 * time.Second

// ConfigMap is a reload.Source: it applies one ConfigMap's policy key on every
// change and records what became of it as Events on the ConfigMap.
type ConfigMap struct {
	cfg    Config
	client *client
	source string
}

// NewConfigMap validates cfg and builds the API client; it does not contact the
// API server yet.
func NewConfigMap(cfg Config) (*ConfigMap, error) {
	if cfg.Namespace == "" || cfg.Name == "" {
		return nil, errors.New("k8s: ConfigMap namespace and name are required")
	}
	if cfg.REST == nil {
		return nil, errors.New("k8s: REST config is required")
	}
	cs, err := setup(cfg.REST, &cfg.Key, &cfg.Component, &cfg.Log, &cfg.SyncTimeout)
	if err != nil {
		return nil, err
	}
	return &ConfigMap{cfg: cfg, client: cs, source: "configmap:" + cfg.Namespace + "/" + cfg.Name}, nil
}

// setup applies the defaults every watcher shares and builds the API client.
func setup(rc *rest.Config, key, component *string, log **slog.Logger, sync *time.Duration) (*client, error) {
	if *key == "" {
		*key = DefaultKey
	}
	if *log == nil {
		*log = slog.Default()
	}
	if *component == "" {
		*component = "extauthz"
	}
	if *sync <= 0 {
		*sync = DefaultSyncTimeout
	}
	return newClient(rc)
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
// in resourceNames instead of granting every ConfigMap in the namespace. Run fails
// when the first list does not succeed within SyncTimeout; after that the
// informer rides out API server outages itself.
func (c *ConfigMap) Run(ctx context.Context, apply reload.ApplyFunc) error {
	rec, stopEvents := c.client.recorder(ctx, c.cfg.Component)
	defer stopEvents()

	inf := informer(c.client.configMaps(c.cfg.Namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + c.cfg.Name
	}))
	// inForce is the hash of the policy in force, as the last outcome reported it;
	// the informer calls handlers one at a time.
	var inForce string
	handle := func(obj any) {
		if cm, ok := toConfigMap(obj); ok {
			inForce = c.apply(ctx, rec, apply, cm)
		}
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: func(obj any) {
			c.cfg.Log.Warn("policy ConfigMap deleted; the last policy stays in force", "source", c.source, "hash", inForce)
			if cm, ok := toConfigMap(obj); ok {
				rec.Eventf(cm, corev1.EventTypeWarning, ReasonDeleted,
					"ConfigMap deleted; extauthz keeps the last policy (hash %s)", orNone(inForce))
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching %s: %w", c.source, err)
	}
	// The informer stops when rctx ends; wait for it, so rctx is cancelled first
	// on every return (defers run last-in, first-out).
	rctx, stop := context.WithCancel(ctx)
	defer start(rctx, inf)()
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, c.cfg.SyncTimeout)
	synced := cache.WaitForCacheSync(sctx.Done(), inf.HasSynced)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case !synced:
		return fmt.Errorf("watching %s: could not list it within %s (is the API server reachable, and may this service account get, list and watch it?)", c.source, c.cfg.SyncTimeout)
	case len(inf.GetStore().List()) == 0:
		// It may be created later (GitOps order); until then extauthz is not ready.
		c.cfg.Log.Error("policy ConfigMap not found; not ready until it exists", "source", c.source)
	}
	<-ctx.Done()
	return nil
}

// apply hands one version of the ConfigMap to the reloader, records an Event for
// the outcome, and returns the hash in force.
func (c *ConfigMap) apply(ctx context.Context, rec record.EventRecorder, apply reload.ApplyFunc, cm *corev1.ConfigMap) string {
	u := reload.Update{Source: c.source}
	if doc, ok := cm.Data[c.cfg.Key]; ok {
		u.Doc = []byte(doc)
	} else {
		u.Err = fmt.Errorf("ConfigMap has no key %q", c.cfg.Key)
	}
	out := apply(ctx, u)
	switch out.Result {
	case reload.Applied:
		rec.Eventf(cm, corev1.EventTypeNormal, ReasonApplied, "policy %s applied (resourceVersion %s)", out.Hash, cm.ResourceVersion)
		for _, warning := range out.Warnings {
			rec.Eventf(cm, corev1.EventTypeWarning, ReasonLint, "policy %s: %s", out.Hash, warning)
		}
	case reload.Rejected:
		rec.Eventf(cm, corev1.EventTypeWarning, ReasonRejected, "policy rejected, keeping %s: %v", orNone(out.Hash), out.Err)
	}
	return out.Hash
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
