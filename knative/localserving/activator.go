package localserving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The activator's own answers: errInstance and errStart are 502, errFull
// and errClosed 503, a timeout 504.
var (
	errInstance = errors.New("instance failed")
	errStart    = errors.New("cannot start an instance")
	errFull     = errors.New("request queue full")
	errClosed   = errors.New("closing")
)

// waiter is a request held until an instance has room for it.
type waiter struct {
	arrived time.Time
	cold    bool // no instance was ready when it came
	ch      chan grant
}

// grant hands a waiter an instance (its slot taken) or an error.
type grant struct {
	inst *instance
	err  error
}

// outcome is what the proxy says of one request, through its context.
type outcome struct{ failed bool }

type outcomeKey struct{}

// ServeHTTP is the activator: take a slot on a ready instance, holding the
// request while there is none (starting one), then proxy.
func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	ctx := r.Context()
	if s.set.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.set.timeout)
		defer cancel()
	}
	o := &outcome{}
	r = r.WithContext(context.WithValue(ctx, outcomeKey{}, o))
	inst, warm, err := s.acquire(ctx, arrived)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The proxy panics with http.ErrAbortHandler when an answer breaks
	// off midway: the slot is given back all the same.
	defer func() {
		var latency time.Duration
		if warm && !o.failed {
			latency = time.Since(arrived)
		}
		s.release(inst, latency)
	}()
	inst.proxy.ServeHTTP(w, r)
}

// acquire takes a slot on a ready instance with room, or queues for one
// (scaling up) until ctx ends; warm says it came at once.
func (s *service) acquire(ctx context.Context, arrived time.Time) (inst *instance, warm bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, errClosed
	}
	if len(s.queue) == 0 {
		if inst := s.pickLocked(); inst != nil {
			s.assignLocked(inst)
			s.c.warm++
			s.mu.Unlock()
			return inst, true, nil
		}
	}
	if len(s.queue) >= s.opts.queueSize {
		s.mu.Unlock()
		return nil, false, fmt.Errorf("%w (%d held)", errFull, s.opts.queueSize)
	}
	wt := &waiter{arrived: arrived, cold: !s.anyReadyLocked(), ch: make(chan grant, 1)}
	s.queue = append(s.queue, wt)
	s.scaleLocked()
	s.mu.Unlock()

	select {
	case g := <-wt.ch:
		if g.err == nil && wt.cold {
			s.log.Info("cold start", "service", s.set.name, "instance", g.inst.name, "wait", time.Since(arrived))
		}
		return g.inst, false, g.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	queued := s.dequeueLocked(wt)
	s.mu.Unlock()
	if !queued {
		// Granted as ctx ended: give the slot back.
		if g := <-wt.ch; g.inst != nil {
			s.release(g.inst, 0)
		}
	}
	return nil, false, fmt.Errorf("held %v without an instance: %w", time.Since(arrived).Round(time.Millisecond), ctx.Err())
}

// release gives back inst's slot, records a warm request's latency (0:
// none) and serves the queue.
func (s *service) release(inst *instance, warmLatency time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst.inFlight--
	s.inFlight--
	if warmLatency > 0 {
		s.c.warmLat.add(warmLatency)
	}
	if inst.inFlight == 0 && inst.phase == ready {
		s.armIdleLocked(inst)
	}
	s.dispatchLocked()
}

// pickLocked is the ready instance with room and the fewest requests in
// flight, or nil.
func (s *service) pickLocked() *instance {
	var best *instance
	for _, in := range s.instances {
		if in.phase != ready || (s.set.concurrency > 0 && in.inFlight >= s.set.concurrency) {
			continue
		}
		if best == nil || in.inFlight < best.inFlight {
			best = in
		}
	}
	return best
}

// assignLocked takes a slot on inst; it is no longer idle.
func (s *service) assignLocked(inst *instance) {
	inst.inFlight++
	s.inFlight++
	inst.idleGen++
	if inst.idle != nil {
		inst.idle.Stop()
		inst.idle = nil
	}
}

// dispatchLocked hands the queue's head to instances with room, in order.
func (s *service) dispatchLocked() {
	for len(s.queue) > 0 {
		inst := s.pickLocked()
		if inst == nil {
			return
		}
		wt := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.assignLocked(inst)
		if wt.cold {
			s.c.cold.add(time.Since(wt.arrived))
		} else {
			s.c.queued++
		}
		wt.ch <- grant{inst: inst}
	}
}

// dequeueLocked removes wt from the queue; false: it was not there (it has
// been granted).
func (s *service) dequeueLocked(wt *waiter) bool {
	for i, q := range s.queue {
		if q == wt {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
}

// failQueueLocked answers every held request with err.
func (s *service) failQueueLocked(err error) {
	for _, wt := range s.queue {
		wt.ch <- grant{err: err}
	}
	s.queue = nil
}

// fail answers a request the activator could not serve, as Knative's
// activator and queue-proxy do: 504 on a timeout, 503 when full or
// closing, 502 when the instance failed.
func (s *service) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	case errors.Is(err, errFull), errors.Is(err, errClosed):
		status = http.StatusServiceUnavailable
	}
	if o, ok := r.Context().Value(outcomeKey{}).(*outcome); ok {
		o.failed = true
	}
	s.mu.Lock()
	s.c.failed++
	s.mu.Unlock()
	s.log.Warn("request failed", "service", s.set.name, "status", status, "error", err)
	http.Error(w, "localserving: "+s.set.name+": "+err.Error(), status)
}
