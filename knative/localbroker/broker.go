package localbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"council.dev/knative/kustomized"
)

// Resolver gives the URL of an object a manifest refers to (a Knative
// Service, for example), as Knative's URI resolver reads it from the
// object's status.address.url. ref.Namespace is always set. References to
// the Broker itself are resolved by the Broker.
type Resolver func(ref duckv1.KReference) (string, error)

// Broker is a running local Broker: its ingress, one dispatcher per
// Trigger and the PingSources that send to it. Close stops it.
type Broker struct {
	opts      options
	js        jetstream.JetStream
	stream    jetstream.Stream
	subject   string
	name, ns  string
	obj       *eventingv1.Broker
	resolve   Resolver
	ingress   *http.Server
	url       string
	client    *http.Client
	cron      *cron.Cron
	pending   sync.Map // trigger/sequence → dead letter the sink has not taken yet
	wg        sync.WaitGroup
	mu        sync.Mutex
	closed    bool
	triggers  map[string]bool
	consumers []jetstream.ConsumeContext
	// base is the lifetime of the Broker's goroutines, canceled by Close so
	// that deliveries in flight end (and stay unacknowledged) at once.
	base   context.Context
	cancel context.CancelFunc
}

// ackWait is how long JetStream waits for a dispatcher's answer before
// redelivering; a delivery in progress tells it every ackWait/3 that it is
// still working, so the Trigger's timeout alone bounds an attempt.
const ackWait = 30 * time.Second

// New starts the Broker of m (the only one, or WithBroker's) on js: its
// stream, its ingress, a dispatcher for each of its Triggers and its
// PingSources. resolve gives the URL of every subscriber and dead-letter
// sink a manifest refers to. It fails when a Trigger uses what the local
// Broker does not support (spec.filters), when a destination does not
// resolve, or when a delivery spec or PingSource schedule does not parse.
func New(ctx context.Context, js jetstream.JetStream, m *kustomized.Manifests, resolve Resolver, opts ...Option) (*Broker, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if js == nil || m == nil || resolve == nil {
		return nil, errors.New("localbroker: New needs JetStream, manifests and a resolver")
	}
	br, err := pickBroker(m, o.broker)
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	b := &Broker{
		opts:     o,
		js:       js,
		name:     br.Name,
		ns:       br.Namespace,
		obj:      br,
		resolve:  resolve,
		client:   &http.Client{},
		triggers: map[string]bool{},
		base:     base,
		cancel:   cancel,
	}
	if err := b.start(ctx, m); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// start creates the stream, serves the ingress and starts the dispatchers
// and PingSources.
func (b *Broker) start(ctx context.Context, m *kustomized.Manifests) error {
	sc, err := streamConfig(b.obj, m, b.opts)
	if err != nil {
		return err
	}
	b.subject = sc.Subjects[0]
	if b.stream, err = b.js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("localbroker: stream %s: %w", sc.Name, err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", b.opts.addr)
	if err != nil {
		return fmt.Errorf("localbroker: ingress: %w", err)
	}
	b.url = "http://" + ln.Addr().String() + ingressPath(b.ns, b.name)
	b.ingress = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.ingress.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.opts.logger.Error("localbroker: ingress stopped", "error", err)
		}
	}()
	for _, tr := range m.Triggers {
		if tr.Spec.Broker != b.name || namespaceOr(tr.Namespace, b.ns) != b.ns {
			continue
		}
		if err := b.AddTrigger(ctx, *tr); err != nil {
			return err
		}
	}
	return b.startPings(m.PingSources)
}

// pickBroker returns the Broker named name, or the only one when name is
// empty.
func pickBroker(m *kustomized.Manifests, name string) (*eventingv1.Broker, error) {
	if name == "" {
		if len(m.Brokers) != 1 {
			return nil, fmt.Errorf("localbroker: the manifests hold %d Brokers; name one with WithBroker", len(m.Brokers))
		}
		return m.Brokers[0], nil
	}
	for _, br := range m.Brokers {
		if br.Name == name {
			return br, nil
		}
	}
	return nil, fmt.Errorf("localbroker: no Broker %q in the manifests", name)
}

// URL is the ingress URL, http://host:port/<namespace>/<broker>, as Knative
// gives it in the Broker's status.address.url (K_SINK for a SinkBinding).
func (b *Broker) URL() string { return b.url }

// Close stops the PingSources, the ingress and the dispatchers and waits
// for them. A delivery in flight is cut short and handed back to JetStream
// (nak), which delivers it again to the next Broker on the same stream. It
// does not
// close the NATS connection, which belongs to the caller.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	consumers := b.consumers
	b.mu.Unlock()

	if b.cron != nil {
		<-b.cron.Stop().Done()
	}
	var err error
	if b.ingress != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if e := b.ingress.Shutdown(ctx); e != nil {
			err = fmt.Errorf("localbroker: ingress shutdown: %w", e)
		}
	}
	// First end the pulls (a message already buffered goes to the callback,
	// which hands it back), then cut the deliveries in flight short: their
	// naks reach a server that no longer has a pull of this Broker to
	// redeliver them to, so the next Broker gets them at once instead of
	// after the AckWait of a message redelivered into a stopped pull.
	for _, cc := range consumers {
		cc.Drain()
	}
	b.cancel()
	// Wait for each consumer's goroutines to end; bounded, as a consumer
	// whose NATS server is gone may never report it.
	wait, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelWait()
	for _, cc := range consumers {
		select {
		case <-cc.Closed():
		case <-wait.Done():
		}
	}
	b.wg.Wait()
	return err
}

// resolveDestination gives the URL of d, a destination in namespace ns:
// its ref's URL (with uri resolved against it when both are set), or its
// absolute uri.
func (b *Broker) resolveDestination(ns string, d duckv1.Destination) (string, error) {
	if d.Ref == nil {
		if d.URI == nil || !d.URI.URL().IsAbs() {
			return "", errors.New("destination has neither a ref nor an absolute uri")
		}
		return d.URI.String(), nil
	}
	ref := *d.Ref
	ref.Namespace = namespaceOr(ref.Namespace, ns)
	var base string
	if ref.Kind == "Broker" && strings.HasPrefix(ref.APIVersion, "eventing.knative.dev/") &&
		ref.Name == b.name && ref.Namespace == b.ns {
		base = b.url
	} else {
		u, err := b.resolve(ref)
		if err != nil {
			return "", fmt.Errorf("resolve %s %s/%s: %w", ref.Kind, ref.Namespace, ref.Name, err)
		}
		base = u
	}
	if d.URI == nil {
		return base, nil
	}
	bu, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("resolve %s %s/%s: %q: %w", ref.Kind, ref.Namespace, ref.Name, base, err)
	}
	return bu.ResolveReference(d.URI.URL()).String(), nil
}

// namespaceOr is ns, or def when ns is empty (a reference without a
// namespace is to its own).
func namespaceOr(ns, def string) string {
	if ns == "" {
		return def
	}
	return ns
}

// log is the Broker's logger.
func (b *Broker) log() *slog.Logger { return b.opts.logger }
