package localserving

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// phase is where an instance is in its life.
type phase int

const (
	starting phase = iota // exec'd, its readiness probe not yet answered
	ready                 // takes requests
	stopping              // signalled; takes no request
	exited                // its process has been reaped
)

// instance is one process of a Service: the fields up to proxy are set at
// start; the rest are guarded by its service's mutex.
type instance struct {
	name    string
	pid     int
	addr    string
	started time.Time
	proxy   *httputil.ReverseProxy
	exited  chan struct{} // closed once the process is reaped

	phase    phase
	killed   bool
	inFlight int
	idle     *time.Timer
	idleGen  int // the arming of idle that may stop the instance
}

// Command says how to start one instance of a Service.
type Command struct {
	// Path is the binary: a path, or a name looked up in PATH.
	Path string
	// Args are its arguments, the binary's name excluded.
	Args []string
	// Env is its whole environment ("KEY=value"); PORT, K_SERVICE,
	// K_CONFIGURATION and K_REVISION are added, as Knative adds them.
	Env []string
	// Dir is its working directory; empty: the caller's.
	Dir string
}

// freePort asks the kernel for a free loopback port; it is free again when
// the instance binds it (another process could take it between: the
// instance then fails its start, and the next request starts another).
func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	return port, nil
}

// startLocked execs a new instance and watches it: its output, its exit,
// its readiness. s.mu is held.
func (s *service) startLocked() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.next++
	name := s.set.name + "-" + strconv.Itoa(s.next)
	// No context ends an instance: stop and Kill signal its whole group.
	cmd := exec.CommandContext(context.Background(), s.cmd.Path, s.cmd.Args...)
	cmd.Dir = s.cmd.Dir
	cmd.Env = append(slices.Clone(s.cmd.Env),
		"PORT="+strconv.Itoa(port),
		"K_SERVICE="+s.set.name,
		"K_CONFIGURATION="+s.set.name,
		"K_REVISION="+s.set.revision)
	ownGroup(cmd)
	// A pipe of our own rather than exec's copying goroutine: Wait then
	// returns when the process exits, even if a child still holds the pipe.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	started := time.Now()
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	inst := &instance{
		name:    name,
		pid:     cmd.Process.Pid,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		started: started,
		exited:  make(chan struct{}),
	}
	inst.proxy = s.newProxy(inst)
	s.instances = append(s.instances, inst)
	s.c.starts++
	s.log.Debug("instance started", "service", s.set.name, "instance", name, "pid", inst.pid, "addr", inst.addr)
	s.procs.Add(3)
	go func() {
		defer s.procs.Done()
		s.out.copyLines(name, r)
		_ = r.Close()
	}()
	go func() {
		defer s.procs.Done()
		s.watch(inst, cmd)
	}()
	go func() {
		defer s.procs.Done()
		s.probe(inst)
	}()
	return nil
}

// newProxy proxies to inst, streaming, through the service's transport.
func (s *service) newProxy(inst *instance) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: inst.addr}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:     s.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.fail(w, r, fmt.Errorf("%w: %s: %w", errInstance, inst.name, err))
		},
	}
}

// watch reaps inst's process, then kills what is left of its process group
// (as a container's end does), removes it and serves the queue again.
func (s *service) watch(inst *instance, cmd *exec.Cmd) {
	err := cmd.Wait()
	_ = signalGroup(inst.pid, syscall.SIGKILL)
	s.transport.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	was := inst.phase
	inst.phase = exited
	close(inst.exited)
	s.instances = slices.DeleteFunc(s.instances, func(i *instance) bool { return i == inst })
	inst.idleGen++
	if inst.idle != nil {
		inst.idle.Stop()
	}
	log := s.log.With("service", s.set.name, "instance", inst.name, "pid", inst.pid, "exit", exitText(err))
	switch {
	case inst.killed:
		log.Info("instance killed", "in_flight", inst.inFlight)
	case was == stopping:
		log.Info("instance stopped")
	default:
		log.Warn("instance exited", "ready", was == ready, "in_flight", inst.inFlight)
	}
	if was == starting && !s.anyLiveLocked() {
		// A binary that cannot start would be started again by every
		// queued request: fail them instead; the next request tries anew.
		s.failQueueLocked(fmt.Errorf("%w: %s exited before it was ready: %s", errInstance, inst.name, exitText(err)))
		return
	}
	s.scaleLocked()
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stop asks inst to end (SIGTERM to its group), kills it after the grace,
// and returns once it has been reaped. Its phase is already stopping.
func (s *service) stop(inst *instance) {
	_ = signalGroup(inst.pid, syscall.SIGTERM)
	grace := time.NewTimer(s.opts.stopGrace)
	defer grace.Stop()
	select {
	case <-inst.exited:
		return
	case <-grace.C:
	}
	s.log.Warn("instance ignored SIGTERM: killing it", "service", s.set.name, "instance", inst.name, "grace", s.opts.stopGrace)
	_ = signalGroup(inst.pid, syscall.SIGKILL)
	<-inst.exited
}
