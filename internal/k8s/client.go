package k8s

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// client is what the watchers ask of the API server: ConfigMaps to list and
// watch, Events to write, through a REST client that knows core/v1 alone.
// client-go's generated clientset does the same, but a binary that links it
// registers every API group when it starts, whether or not a ConfigMap source is
// configured: about 45 MB of binary and 29 MiB of resident memory in every
// extauthz. Nothing here runs before a watcher is built.
type client struct {
	rest   rest.Interface
	scheme *runtime.Scheme
}

var (
	coreOnce   sync.Once
	coreScheme *runtime.Scheme
	coreErr    error
)

// core is the scheme of the types the watchers read and write, built on first use.
func core() (*runtime.Scheme, error) {
	coreOnce.Do(func() {
		coreScheme = runtime.NewScheme()
		coreErr = corev1.AddToScheme(coreScheme)
	})
	return coreScheme, coreErr
}

func newClient(rc *rest.Config) (*client, error) {
	s, err := core()
	if err != nil {
		return nil, fmt.Errorf("kubernetes scheme: %w", err)
	}
	cfg := rest.CopyConfig(rc)
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	r, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &client{rest: r, scheme: s}, nil
}

// configMaps lists and watches the ConfigMaps of namespace ("": all) that the
// list options tweak selects.
func (c *client) configMaps(namespace string, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	req := func(o metav1.ListOptions) *rest.Request {
		tweak(&o)
		return c.rest.Get().UseProtobufAsDefault().Namespace(namespace).Resource("configmaps").VersionedParams(&o, metav1.ParameterCodec)
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			out := &corev1.ConfigMapList{}
			return out, req(o).Do(ctx).Into(out)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.Watch = true
			return req(o).Watch(ctx)
		},
	}
}

// informer is an informer of lw's ConfigMaps; start runs it.
func informer(lw *cache.ListWatch) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 10*time.Minute, cache.Indexers{})
}

// start runs inf until ctx ends; wait returns once it has stopped.
func start(ctx context.Context, inf cache.SharedIndexInformer) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	return wg.Wait
}

// recorder writes Events, each in its object's namespace, until stop.
func (c *client) recorder(ctx context.Context, component string) (rec record.EventRecorder, stop func()) {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(eventSink{c.rest})
	return broadcaster.NewRecorder(c.scheme, corev1.EventSource{Component: component}), broadcaster.Shutdown
}

// eventSink is record.EventSink on the REST client, as the clientset's
// EventSinkImpl would be. Requests prefer protobuf, as the clientset's do for
// core types.
type eventSink struct{ rest rest.Interface }

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rest.Post().UseProtobufAsDefault().Namespace(e.Namespace).Resource("events").Body(e).Do(context.Background()).Into(out)
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rest.Put().UseProtobufAsDefault().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(context.Background()).Into(out)
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rest.Patch(types.StrategicMergePatchType).UseProtobufAsDefault().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(data).Do(context.Background()).Into(out)
}
