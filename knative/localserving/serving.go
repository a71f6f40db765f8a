package localserving

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"

	"council.dev/shared/council"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// Serving runs Knative Services as local processes behind an activator
// each; the package documentation says what is reproduced.
type Serving struct {
	opts options
	out  *output

	mu       sync.Mutex
	services map[string]*service
	closed   bool
}

// New returns a Serving with no Service; it starts nothing yet.
func New(opts ...Option) (*Serving, error) {
	o, err := defaultOptions()
	if err != nil {
		return nil, err
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Serving{opts: o, out: &output{w: o.output}, services: map[string]*service{}}, nil
}

// Add serves svc, whose instances run run, at URL(svc.Name); it starts its
// min-scale instances. An invalid Service or Command, or a name already
// added, is an error wrapping council.ErrInvalid or council.ErrConflict.
func (sv *Serving) Add(svc *servingv1.Service, run Command) error {
	set, err := readSettings(svc, sv.opts.autoscaler, sv.opts.maxScaleLimit)
	if err != nil {
		return err
	}
	if run.Path == "" {
		return council.Invalidf("localserving: Service %s: no binary to run", set.name)
	}
	if run.Path, err = exec.LookPath(run.Path); err != nil {
		return council.Invalidf("localserving: Service %s: %v", set.name, err)
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.closed {
		return fmt.Errorf("localserving: add %s: %w", set.name, errClosed)
	}
	if _, ok := sv.services[set.name]; ok {
		return fmt.Errorf("localserving: Service %s: %w: already added", set.name, council.ErrConflict)
	}
	s, err := newService(set, run, &sv.opts, sv.out)
	if err != nil {
		return err
	}
	sv.services[set.name] = s
	return nil
}

func (sv *Serving) service(name string) *service {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.services[name]
}

// URL is where Service name takes requests (its activator), e.g. what a
// Trigger's subscriber resolves to; "" for a name not added.
func (sv *Serving) URL(name string) string {
	if s := sv.service(name); s != nil {
		return s.url
	}
	return ""
}

// Instances counts the processes of Service name running now (starting,
// ready or stopping); 0 for a name not added.
func (sv *Serving) Instances(name string) int {
	return sv.Stats(name).Instances
}

// Stats are Service name's counts, latencies and gauges; zero for a name
// not added.
func (sv *Serving) Stats(name string) Stats {
	if s := sv.service(name); s != nil {
		return s.stats()
	}
	return Stats{}
}

// Kill sends SIGKILL to one instance of Service name, the one with the most
// requests in flight, and returns its pid once it has been reaped. Its
// requests in flight are answered 502; the next request starts another
// instance. An unknown name or no instance is an error wrapping
// council.ErrNotFound.
func (sv *Serving) Kill(name string) (int, error) {
	s := sv.service(name)
	if s == nil {
		return 0, fmt.Errorf("localserving: kill %s: %w: no such Service", name, council.ErrNotFound)
	}
	s.mu.Lock()
	var victim *instance
	for _, in := range s.instances {
		if (in.phase == starting || in.phase == ready) && (victim == nil || in.inFlight > victim.inFlight) {
			victim = in
		}
	}
	if victim == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("localserving: kill %s: %w: no instance running", name, council.ErrNotFound)
	}
	victim.phase = stopping
	victim.killed = true
	s.mu.Unlock()
	if err := signalGroup(victim.pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("localserving: kill %s: %w", victim.name, err)
	}
	<-victim.exited
	return victim.pid, nil
}

// Close stops every Service: listeners closed, held requests answered 503,
// instances stopped (SIGTERM to their process groups, SIGKILL after the
// grace). It returns once every instance is reaped; closing again does
// nothing.
func (sv *Serving) Close() error {
	sv.mu.Lock()
	if sv.closed {
		sv.mu.Unlock()
		return nil
	}
	sv.closed = true
	services := sv.services
	sv.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(s.close)
	}
	wg.Wait()
	return nil
}
