package kingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrs "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/networking/pkg/client/clientset/versioned"
	listers "knative.dev/networking/pkg/client/listers/networking/v1alpha1"
)

const (
	// DefaultClass is the ingress class the Controller keeps. Knative
	// Serving's config-network must name it (ingress-class).
	DefaultClass = "council.ingress.networking.knative.dev"
	// DefaultDomain is the proxy Service's cluster-local name, which the
	// Controller reports as both load balancers of every Ingress it keeps.
	DefaultDomain = "kingress.kingress-system.svc.cluster.local"

	// maxRetries bounds the rate-limited retries of one Ingress's status
	// update; the next informer event or resync tries again.
	maxRetries = 15
)

// Controller keeps the Table in step with the Ingresses of its class and
// marks each one Ready once its rules are loaded.
type Controller struct {
	client   versioned.Interface
	table    *Table
	class    string
	domain   string
	resync   time.Duration
	log      *slog.Logger
	informer cache.SharedIndexInformer
	lister   listers.IngressLister
	queue    workqueue.TypedRateLimitingInterface[string]
	synced   atomic.Bool
}

// ControllerOption configures a Controller.
type ControllerOption func(*Controller) error

// WithClass sets the ingress class the Controller keeps; the default is
// DefaultClass.
func WithClass(class string) ControllerOption {
	return func(c *Controller) error {
		if class == "" {
			return errors.New("kingress: WithClass: empty class")
		}
		c.class = class
		return nil
	}
}

// WithDomain sets the load balancer domain reported in each Ingress's
// status; the default is DefaultDomain.
func WithDomain(domain string) ControllerOption {
	return func(c *Controller) error {
		if domain == "" {
			return errors.New("kingress: WithDomain: empty domain")
		}
		c.domain = domain
		return nil
	}
}

// WithResync sets how often every Ingress is looked at again even without
// a change; the default is 10 minutes, 0 turns it off.
func WithResync(d time.Duration) ControllerOption {
	return func(c *Controller) error {
		if d < 0 {
			return fmt.Errorf("kingress: WithResync: negative period %v", d)
		}
		c.resync = d
		return nil
	}
}

// WithLogger sets the Controller's logger; the default discards.
func WithLogger(l *slog.Logger) ControllerOption {
	return func(c *Controller) error {
		if l == nil {
			return errors.New("kingress: WithLogger: nil logger")
		}
		c.log = l
		return nil
	}
}

// NewController returns a Controller that watches Ingresses in every
// namespace through client and loads those of its class into table.
func NewController(client versioned.Interface, table *Table, opts ...ControllerOption) (*Controller, error) {
	if client == nil || table == nil {
		return nil, errors.New("kingress: NewController: nil client or table")
	}
	c := &Controller{
		client: client,
		table:  table,
		class:  DefaultClass,
		domain: DefaultDomain,
		resync: 10 * time.Minute,
		log:    slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	c.informer = newInformer(client, c.resync)
	c.lister = listers.NewIngressLister(c.informer.GetIndexer())
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kingress"},
	)
	if _, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("kingress: add event handler: %w", err)
	}
	return c, nil
}

// enqueue queues every Ingress, whatever its class: one whose class
// changed away from ours must leave the Table.
func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.log.Error("kingress: key of ingress", "error", err)
		return
	}
	c.queue.Add(key)
}

// Synced reports whether the Controller has loaded every Ingress of its
// class that existed when it started into the Table.
func (c *Controller) Synced() bool {
	return c.synced.Load()
}

// Run watches Ingresses and reconciles them with workers goroutines until
// ctx is done. It returns an error if the informer cannot sync.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		workers = 1
	}
	defer c.queue.ShutDown()
	informerDone := make(chan struct{})
	go func() {
		defer close(informerDone)
		c.informer.RunWithContext(ctx)
	}()
	defer func() { <-informerDone }()
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		return fmt.Errorf("kingress: ingress informer did not sync: %w", context.Cause(ctx))
	}
	// Load every existing Ingress into the Table before reporting ready, so
	// that a restarted proxy does not answer 404 for routes it has not
	// loaded yet. Their keys are queued too: the workers write statuses.
	for _, key := range c.informer.GetStore().ListKeys() {
		if _, err := c.load(key); err != nil {
			c.log.Error("kingress: load ingress", "key", key, "error", err)
		}
	}
	c.synced.Store(true)
	c.log.Info("kingress: controller synced", "class", c.class, "domain", c.domain, "ingresses", len(c.informer.GetStore().ListKeys()))
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for c.next(ctx) { //nolint:revive // next does the work
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	for range workers {
		<-done
	}
	return nil
}

// next reconciles one queued key; it returns false once the queue is shut
// down.
func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.reconcile(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case c.queue.NumRequeues(key) < maxRetries:
		c.log.Info("kingress: retrying ingress", "key", key, "error", err)
		c.queue.AddRateLimited(key)
	default:
		c.log.Error("kingress: giving up on ingress", "key", key, "error", err)
		c.queue.Forget(key)
	}
	return true
}

// reconcile loads the Ingress named key into the Table, or removes it when
// it is gone or not ours, and then brings its status to Ready.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ing, err := c.load(key)
	if err != nil || ing == nil || ing.DeletionTimestamp != nil {
		return err
	}
	want := ing.DeepCopy()
	lb := []v1alpha1.LoadBalancerIngressStatus{{DomainInternal: c.domain}}
	want.Status.InitializeConditions()
	want.Status.MarkNetworkConfigured()
	want.Status.MarkLoadBalancerReady(lb, lb)
	want.Status.ObservedGeneration = ing.Generation
	if equality.Semantic.DeepEqual(ing.Status, want.Status) {
		return nil
	}
	_, err = c.client.NetworkingV1alpha1().Ingresses(ing.Namespace).UpdateStatus(ctx, want, metav1.UpdateOptions{})
	switch {
	case apierrs.IsNotFound(err):
		return nil // deleted meanwhile; its delete event removes it
	case err != nil:
		return fmt.Errorf("kingress: update status of %s: %w", key, err)
	}
	c.log.Info("kingress: ingress ready", "key", key, "generation", ing.Generation)
	return nil
}

// newInformer returns an informer on Ingresses in every namespace. It is
// what knative.dev/networking's generated informer does, plus what newer
// generators add: the client may declare (IsWatchListSemanticsUnSupported)
// that it cannot stream the initial list as watch events, as client-go's
// fake clientsets do, and the informer then lists and watches instead.
func newInformer(client versioned.Interface, resync time.Duration) cache.SharedIndexInformer {
	ings := client.NetworkingV1alpha1().Ingresses(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return ings.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return ings.Watch(ctx, opts)
		},
	}
	return cache.NewSharedIndexInformer(
		cache.ToListWatcherWithWatchListSemantics(lw, client),
		&v1alpha1.Ingress{},
		resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
	)
}

// load puts the rules of the Ingress named key into the Table and returns
// it, or removes the key from the Table and returns nil when the Ingress is
// gone or not of our class.
func (c *Controller) load(key string) (*v1alpha1.Ingress, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, fmt.Errorf("kingress: key %q: %w", key, err)
	}
	ing, err := c.lister.Ingresses(ns).Get(name)
	if apierrs.IsNotFound(err) {
		if c.table.Has(key) {
			c.table.Delete(key)
			c.log.Info("kingress: ingress removed", "key", key)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kingress: get %s: %w", key, err)
	}
	if networking.IngressClassAnnotation.Value(ing.Annotations) != c.class {
		c.table.Delete(key)
		return nil, nil
	}
	c.table.Set(key, ing.Spec.Rules)
	return ing, nil
}
