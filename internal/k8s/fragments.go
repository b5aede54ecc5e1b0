package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/betterauth-extauthz/extauthz/internal/policy"
	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// FragmentsConfig says which ConfigMaps hold policy fragments.
type FragmentsConfig struct {
	// Selector is a label selector ("extauthz.io/policy-fragment=true"); required.
	Selector string
	// Namespaces to watch; every namespace when empty (which needs a ClusterRole).
	Namespaces []string
	// Key in each ConfigMap's data; DefaultKey when empty.
	Key string
	// REST reaches the API server; required.
	REST *rest.Config
	// Log defaults to slog.Default(); Component names the Event source
	// ("extauthz" when empty).
	Log       *slog.Logger
	Component string
	// SyncTimeout bounds the first list (DefaultSyncTimeout when zero).
	SyncTimeout time.Duration
	// Settle is how long a change waits for more before the policy is recomposed,
	// so a burst of edits (the first list, a GitOps sync) composes once
	// (DefaultSettle when zero).
	Settle time.Duration
}

// maxEventError bounds the rejection reason in an Event (the API server keeps
// messages of about 1 KiB).
const maxEventError = 900

// DefaultSettle is how long a burst of fragment changes is gathered.
const DefaultSettle = 200 * time.Millisecond

// FragmentSink takes the fragments and says what became of them:
// *reload.Reloader is one.
type FragmentSink interface {
	// ApplyFragments replaces every fragment and recomposes the policy.
	ApplyFragments(ctx context.Context, source string, frags []policy.Fragment) []policy.FragmentStatus
	// FragmentStatuses returns the fragments' statuses in force, and a channel
	// closed when they change (a new base policy may accept or reject them).
	FragmentStatuses() ([]policy.FragmentStatus, <-chan struct{})
}

// Fragments watches every ConfigMap a label selector picks and hands their
// policy fragments to a FragmentSink, recording on each ConfigMap an Event when
// its fragment is applied or rejected.
type Fragments struct {
	cfg    FragmentsConfig
	client *client
	source string
}

// NewFragments validates cfg; it does not contact the API server yet.
func NewFragments(cfg FragmentsConfig) (*Fragments, error) {
	sel, err := labels.Parse(cfg.Selector)
	switch {
	case cfg.Selector == "":
		return nil, errors.New("k8s: a label selector is required")
	case err != nil:
		return nil, fmt.Errorf("k8s: label selector %q: %w", cfg.Selector, err)
	case sel.Empty():
		return nil, fmt.Errorf("k8s: label selector %q selects every ConfigMap", cfg.Selector)
	case cfg.REST == nil:
		return nil, errors.New("k8s: REST config is required")
	}
	for _, ns := range cfg.Namespaces {
		if ns == "" || strings.ContainsAny(ns, "/ ") {
			return nil, fmt.Errorf("k8s: %q is not a namespace", ns)
		}
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	cs, err := setup(cfg.REST, &cfg.Key, &cfg.Component, &cfg.Log, &cfg.SyncTimeout)
	if err != nil {
		return nil, err
	}
	return &Fragments{cfg: cfg, client: cs, source: "fragments:" + cfg.Selector}, nil
}

// Source labels the fragments' policy loads in metrics and logs.
func (f *Fragments) Source() string { return f.source }

// Run watches until ctx ends; it fails when the first list does not succeed
// within SyncTimeout (RBAC, an unreachable API server).
func (f *Fragments) Run(ctx context.Context, sink FragmentSink) error {
	rec, stopEvents := f.client.recorder(ctx, f.cfg.Component)
	defer stopEvents()

	namespaces := f.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	dirty := make(chan struct{}, 1)
	mark := func(any) {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: mark, UpdateFunc: func(_, o any) { mark(o) }, DeleteFunc: mark}
	rctx, stop := context.WithCancel(ctx)
	var stores []cache.Store
	var synced []cache.InformerSynced
	for _, ns := range namespaces {
		inf := informer(f.client.configMaps(ns, func(o *metav1.ListOptions) { o.LabelSelector = f.cfg.Selector }))
		if _, err := inf.AddEventHandler(handler); err != nil {
			stop()
			return fmt.Errorf("watching %s: %w", f.source, err)
		}
		defer start(rctx, inf)()
		stores, synced = append(stores, inf.GetStore()), append(synced, inf.HasSynced)
	}
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, f.cfg.SyncTimeout)
	ok := cache.WaitForCacheSync(sctx.Done(), synced...)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case !ok:
		return fmt.Errorf("watching %s: could not list ConfigMaps within %s (is the API server reachable, and may this service account list and watch ConfigMaps in %s?)",
			f.source, f.cfg.SyncTimeout, strings.Join(f.cfg.Namespaces, ", ")+orAll(f.cfg.Namespaces))
	}
	mark(nil) // the first list, even when it is empty
	objs := map[string]*corev1.ConfigMap{}
	recorded := map[string]string{}
	_, changed := sink.FragmentStatuses()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
			// Let a burst of changes settle, then compose once.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(f.cfg.Settle):
			}
			var frags []policy.Fragment
			frags, objs = f.gather(stores)
			f.record(rec, sink.ApplyFragments(ctx, f.source, frags), objs, recorded)
		case <-changed:
			var sts []policy.FragmentStatus
			sts, changed = sink.FragmentStatuses()
			f.record(rec, sts, objs, recorded)
		}
	}
}

func orAll(ns []string) string {
	if len(ns) == 0 {
		return "every namespace"
	}
	return ""
}

// gather reads every selected ConfigMap's fragment.
func (f *Fragments) gather(stores []cache.Store) ([]policy.Fragment, map[string]*corev1.ConfigMap) {
	var frags []policy.Fragment
	objs := map[string]*corev1.ConfigMap{}
	for _, s := range stores {
		for _, o := range s.List() {
			cm, ok := toConfigMap(o)
			if !ok {
				continue
			}
			id := cm.Namespace + "/" + cm.Name
			fr := policy.Fragment{ID: id, Created: cm.CreationTimestamp.Time}
			if doc, ok := cm.Data[f.cfg.Key]; ok {
				fr.Doc = []byte(doc)
			} else {
				fr.Err = fmt.Errorf("ConfigMap has no key %q", f.cfg.Key)
			}
			frags = append(frags, fr)
			objs[id] = cm
		}
	}
	slices.SortFunc(frags, func(a, b policy.Fragment) int { return strings.Compare(a.ID, b.ID) })
	return frags, objs
}

// record writes an Event for every fragment whose status changed since the last
// one recorded (a waiting fragment gets none: the base policy decides it later).
func (f *Fragments) record(rec record.EventRecorder, sts []policy.FragmentStatus, objs map[string]*corev1.ConfigMap, recorded map[string]string) {
	seen := map[string]bool{}
	for _, st := range sts {
		seen[st.ID] = true
		cm := objs[st.ID]
		key := fmt.Sprintf("%s %v %s", st.Hash, st.Applied, st.Error)
		if cm == nil || st.Waiting || recorded[st.ID] == key {
			continue
		}
		recorded[st.ID] = key
		if st.Applied {
			f.cfg.Log.Info("policy fragment applied", "fragment", st.ID, "fragment_hash", st.Hash, "hosts", st.Hosts, "rules", st.Rules)
			rec.Eventf(cm, corev1.EventTypeNormal, ReasonApplied, "fragment %s applied (resourceVersion %s): %d rule(s) for %s",
				st.Hash, cm.ResourceVersion, st.Rules, strings.Join(st.Hosts, ", "))
		} else {
			kept := "no version of it is in force"
			if st.InForce != "" {
				kept = "its last good version " + st.InForce + " stays in force"
			}
			rec.Eventf(cm, corev1.EventTypeWarning, ReasonRejected, "fragment %s rejected (%s; the other fragments are unaffected): %s", st.Hash, kept, reason.Clip(st.Error, maxEventError))
		}
	}
	for id := range recorded {
		if !seen[id] {
			delete(recorded, id)
		}
	}
}
