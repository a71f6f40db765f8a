package localserving

import (
	"context"
	"net"
	"net/http"
	"time"
)

// probe polls inst's readiness probe until it answers, the process exits,
// or the ready timeout passes (then the instance is killed).
func (s *service) probe(inst *instance) {
	tick := time.NewTicker(s.opts.probeInterval)
	defer tick.Stop()
	deadline := time.NewTimer(s.opts.readyTimeout)
	defer deadline.Stop()
	for !s.probeOnce(inst) {
		select {
		case <-inst.exited:
			return
		case <-deadline.C:
			s.log.Error("instance not ready in time: killing it", "service", s.set.name, "instance", inst.name, "timeout", s.opts.readyTimeout)
			s.mu.Lock()
			if inst.phase == starting {
				inst.phase = stopping
			}
			s.mu.Unlock()
			s.stop(inst)
			return
		case <-tick.C:
		}
	}
	s.becameReady(inst)
}

// probeOnce tries the readiness probe once: a TCP connect, or an HTTP GET
// that answers 2xx or 3xx (Kubernetes' rule).
func (s *service) probeOnce(inst *instance) bool {
	p := s.set.probe
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if p.tcp {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", inst.addr)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+inst.addr+p.path, nil)
	if err != nil {
		return false
	}
	req.Header = p.header.Clone()
	req.Header.Set("User-Agent", "localserving-probe")
	resp, err := s.probes.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// becameReady puts inst to work: the queue first.
func (s *service) becameReady(inst *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inst.phase != starting {
		return
	}
	inst.phase = ready
	d := time.Since(inst.started)
	s.c.ready.add(d)
	s.log.Info("instance ready", "service", s.set.name, "instance", inst.name, "pid", inst.pid, "exec_to_ready", d)
	s.dispatchLocked()
	if inst.inFlight == 0 {
		s.armIdleLocked(inst)
	}
}
