package localserving

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// service is one Knative Service: its activator's listener, its instances
// and its queue of held requests.
type service struct {
	set       settings
	cmd       Command
	opts      *options
	out       *output
	log       *slog.Logger
	transport *http.Transport
	probes    *http.Client
	server    *http.Server
	url       string
	serving   sync.WaitGroup // the listener's Serve
	procs     sync.WaitGroup // per instance: output, watch, probe

	mu        sync.Mutex
	instances []*instance // not yet exited
	queue     []*waiter
	inFlight  int // requests holding a slot
	next      int // number of the last instance started
	closed    bool
	c         counters
}

// newService listens for set's requests on a loopback port.
func newService(set settings, cmd Command, opts *options, out *output) (*service, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("localserving: %s: listen: %w", set.name, err)
	}
	s := &service{
		set:  set,
		cmd:  cmd,
		opts: opts,
		out:  out,
		log:  opts.log,
		transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			ResponseHeaderTimeout: set.responseStart,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
		},
		probes: &http.Client{
			Timeout:   set.probe.timeout,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
		url: "http://" + l.Addr().String(),
	}
	s.server = &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = s.server.Serve(l) // ends with ErrServerClosed at close
	}()
	s.mu.Lock()
	s.scaleLocked() // min-scale
	s.mu.Unlock()
	return s, nil
}

// anyReadyLocked says whether an instance takes requests.
func (s *service) anyReadyLocked() bool {
	for _, in := range s.instances {
		if in.phase == ready {
			return true
		}
	}
	return false
}

// liveLocked counts the instances starting or ready.
func (s *service) liveLocked() int {
	n := 0
	for _, in := range s.instances {
		if in.phase == starting || in.phase == ready {
			n++
		}
	}
	return n
}

func (s *service) anyLiveLocked() bool { return s.liveLocked() > 0 }

// scaleLocked starts the instances that the requests in flight and held
// ask for (settings.want); scaling down is the idle timers' work.
func (s *service) scaleLocked() {
	if s.closed {
		return
	}
	for live, want := s.liveLocked(), s.set.want(s.inFlight+len(s.queue)); live < want; live++ {
		if err := s.startLocked(); err != nil {
			s.log.Error("instance start failed", "service", s.set.name, "error", err)
			if !s.anyLiveLocked() {
				s.failQueueLocked(fmt.Errorf("%w: %w", errStart, err))
			}
			return
		}
	}
}

// armIdleLocked stops inst once it has had no request for the idle window,
// unless that would leave fewer than min-scale or than the demand now
// wants (then it looks again after another window).
func (s *service) armIdleLocked(inst *instance) {
	inst.idleGen++
	gen := inst.idleGen
	if inst.idle != nil {
		inst.idle.Stop()
	}
	inst.idle = time.AfterFunc(s.opts.idleWindow, func() {
		s.mu.Lock()
		// The demand now still asks for this many instances (requests in
		// flight on the others): stopping this one would only start
		// another (Knative's autoscaler, not a per-instance timer, scales
		// down, and only below what the demand wants).
		keep := max(s.set.minScale, s.set.want(s.inFlight+len(s.queue)))
		if gen != inst.idleGen || inst.phase != ready || inst.inFlight > 0 {
			s.mu.Unlock()
			return
		}
		if s.liveLocked() <= keep {
			if keep > s.set.minScale {
				s.armIdleLocked(inst) // look again when the demand may have gone
			}
			s.mu.Unlock()
			return
		}
		inst.phase = stopping
		s.mu.Unlock()
		s.log.Info("instance idle: stopping it", "service", s.set.name, "instance", inst.name, "idle", s.opts.idleWindow)
		s.stop(inst)
	})
}

// close stops the listener, answers the held requests 503 and stops every
// instance.
func (s *service) close() {
	_ = s.server.Close()
	s.serving.Wait()
	s.mu.Lock()
	s.closed = true
	s.failQueueLocked(errClosed)
	var all []*instance
	for _, in := range s.instances {
		in.idleGen++
		if in.idle != nil {
			in.idle.Stop()
		}
		in.phase = stopping
		all = append(all, in)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Go(func() { s.stop(in) })
	}
	wg.Wait()
	s.procs.Wait()
	s.transport.CloseIdleConnections()
}

// stats reads the counters and gauges.
func (s *service) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.c.stats()
	st.InFlight, st.Queued, st.Instances = s.inFlight, len(s.queue), len(s.instances)
	return st
}
