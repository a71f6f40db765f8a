// Package stack runs council's local stack in one process: an embedded NATS
// JetStream server (or an external one), the broker topology, and the three
// functions (execute, generate, critique) on the JetStream transport against
// an OpenAI-compatible LLM server. The dev command and the end-to-end tests
// use it. The functions are the ones the images run: built by the same
// constructors (execute.FromConfig, generate.FromConfig,
// critique.FromConfig) from a host.Config parsed by host.LoadConfig from the
// variables their commands read (TestFunctionsAreBuiltLikeTheImages).
// With Config.RayAddress, execute runs backend ray requests as Ray jobs of a
// council-agent binary built into Config.AgentDir; with Config.Legacy, the
// end of every deliberation is also published on the old fleet's subjects;
// with Config.RayExecutorAddr, the old Ray Executor's gRPC API is served
// too (the rayexecutor function).
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/functions/critique"
	"council.dev/functions/execute"
	"council.dev/functions/generate"
	"council.dev/functions/rayexecutor"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/rayjobs"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/host"
	"council.dev/shared/redact"
)

// Config configures the stack. LLMURL is required.
type Config struct {
	LLMURL     string
	LLMModel   string
	LLMTimeout time.Duration
	LLMRetries int
	// NATSURL, when set, uses that server instead of an embedded one.
	NATSURL string
	// StoreDir is the embedded server's JetStream directory (required when
	// NATSURL is empty).
	StoreDir string
	Logger   *slog.Logger
	// Concurrency bounds the in-flight events of each LLM function.
	Concurrency int
	// SweepEvery is the period of sweep.tick events (0: 2s; negative: none).
	SweepEvery time.Duration
	// DuplicateDelivery hands every event to every function twice (test aid
	// for idempotency).
	DuplicateDelivery bool
	// AckWait is how long a delivered event may go unacknowledged before
	// JetStream delivers it again (0: 30s). Handlers that run longer keep
	// their events with in-progress acks, so a short wait only shortens the
	// recovery of events whose handler died.
	AckWait time.Duration
	// Completer, when set, replaces the LLM client (tests of the wiring).
	Completer council.Completer
	// RayAddress, when set, is the Ray dashboard URL: execute then runs
	// backend ray requests as Ray jobs of council-agent, which reach the
	// stack's NATS (loopback: Ray must run on this machine) and LLMURL.
	RayAddress string
	// AgentDir is a directory holding a built council-agent binary, the
	// job's working directory (required with RayAddress).
	AgentDir string
	// RayPool, when above 0, runs backend ray in the warm pool: at least
	// this many Ray jobs of council-agent workers (COUNCIL_RAY_POOL), up
	// to RayPoolMax, each running RayPoolWorkers deliberations at once; a
	// silent worker loses its deliberation after RayPoolAckWait.
	RayPool, RayPoolMax, RayPoolWorkers int
	RayPoolAckWait                      time.Duration
	// Legacy turns on the compatibility publisher: the end of every
	// deliberation is also published on the old fleet's agent.response.*
	// subjects, stream AGENT_RESPONSES (COUNCIL_LEGACY_SUBJECTS).
	Legacy bool
	// RayExecutorAddr, when set, is the listen address of the old Ray
	// Executor's gRPC API (the rayexecutor function, h2c), e.g.
	// "127.0.0.1:50056" or "127.0.0.1:0" for a free port; Stack.RayExecutorAddr
	// is where it listens.
	RayExecutorAddr string
	// RayExecutorWindow is the façade's idempotency window (0: its default,
	// 10 minutes; COUNCIL_RAYEXECUTOR_WINDOW).
	RayExecutorWindow time.Duration
	// RayExecutorMaxTokens caps each completion of what the façade submits
	// (0: council's default; COUNCIL_RAYEXECUTOR_MAX_TOKENS).
	RayExecutorMaxTokens int
	// Env holds more variables of the functions' configuration, read by
	// host.LoadConfig with the others: secrets and authentication, e.g.
	// COUNCIL_LLM_API_KEY, COUNCIL_NATS_USER and COUNCIL_NATS_PASSWORD,
	// COUNCIL_QUERY_TOKEN, COUNCIL_RAY_JOB_LLM_API_KEY_FILE. The embedded
	// NATS server then requires the same user and password, and the stack
	// connects with them (docs/security.md). The OTEL_* variables turn
	// tracing on (OTEL_EXPORTER_OTLP_ENDPOINT) as they do for the commands.
	Env map[string]string
	// TelemetryOptions are passed to each function's telemetry (tests: an
	// in-memory span exporter).
	TelemetryOptions []telemetry.Option
}

// Stack is a running local council.
type Stack struct {
	NC        *nats.Conn
	JS        jetstream.JetStream
	Publisher *natsjs.Publisher
	Store     *natsjs.Store
	Topology  natsjs.Topology
	URL       string
	// Ray is the client of the Ray cluster; nil without Config.RayAddress.
	Ray *rayjobs.Client
	// RayExecutorAddr is where the old Ray Executor's gRPC API listens
	// (host:port); empty without Config.RayExecutorAddr.
	RayExecutorAddr string

	srv    *server.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error

	// tel is each function's telemetry (traces per Config.Env's OTEL_*
	// variables, metrics always), as their commands build it.
	tel map[string]*telemetry.Telemetry
	// config is the functions' configuration, as their commands read it.
	config    host.Config
	completer council.Completer
	// The execute function runs apart, so that it can be restarted.
	execLog    *slog.Logger
	duplicate  bool
	ackWait    time.Duration
	exec       *execute.Function
	execCancel context.CancelFunc
	execDone   chan struct{}
	runCtx     context.Context
}

// Start starts the stack; Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.LLMURL == "" && cfg.Completer == nil {
		return nil, errors.New("stack: an LLM URL is required (COUNCIL_LLM_URL)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{Topology: natsjs.DefaultTopology()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// The configuration is checked before anything starts; the NATS URL
	// is known once the server runs.
	pre, err := hostConfig(cfg, cfg.NATSURL)
	if err != nil {
		return nil, err
	}
	s.URL = cfg.NATSURL
	if s.URL == "" {
		if cfg.StoreDir == "" {
			return nil, errors.New("stack: StoreDir is required for the embedded NATS server")
		}
		// Loopback only; with a user configured, the server requires it.
		s.srv, err = server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: cfg.StoreDir, NoSigs: true, NoLog: true,
			Username: pre.NATSAuth.User, Password: pre.NATSAuth.Password,
		})
		if err != nil {
			return nil, fmt.Errorf("stack: nats server: %w", err)
		}
		s.srv.Start()
		if !s.srv.ReadyForConnections(10 * time.Second) {
			return nil, errors.New("stack: embedded nats server did not start")
		}
		s.URL = s.srv.ClientURL()
	}
	if s.config, err = hostConfig(cfg, s.URL); err != nil {
		return nil, err
	}
	opts, err := s.config.NATSOptions()
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if s.NC, err = nats.Connect(s.URL, append(opts, nats.Name("council-dev"))...); err != nil {
		return nil, fmt.Errorf("stack: connect %s: %w", redact.URLs(s.URL), err)
	}
	if s.JS, err = jetstream.New(s.NC); err != nil {
		return nil, err
	}
	if err = natsjs.Setup(ctx, s.JS, s.Topology); err != nil {
		return nil, err
	}
	if s.Store, err = natsjs.OpenStore(ctx, s.JS, natsjs.WithTopology(s.Topology)); err != nil {
		return nil, err
	}
	if s.Publisher, err = natsjs.NewPublisher(s.JS); err != nil {
		return nil, err
	}
	// The functions are built from s.config, a host.Config parsed from the
	// same variables their commands read, by the constructors their
	// commands use (FromConfig): the stack runs the functions the images
	// run.
	s.completer, s.execLog = cfg.Completer, log.With("function", "execute")
	s.tel = map[string]*telemetry.Telemetry{}
	for _, name := range []string{"execute", "generate", "critique"} {
		if s.tel[name], err = host.NewTelemetry(ctx, s.config, name, cfg.TelemetryOptions...); err != nil {
			return nil, err
		}
	}
	gen, err := generate.FromConfig(s.config, generate.Deps{NC: s.NC, Logger: log.With("function", "generate"), Completer: cfg.Completer, Telemetry: s.tel["generate"]})
	if err != nil {
		return nil, err
	}
	crit, err := critique.FromConfig(s.config, critique.Deps{NC: s.NC, Logger: log.With("function", "critique"), Completer: cfg.Completer, Telemetry: s.tel["critique"]})
	if err != nil {
		return nil, err
	}
	if cfg.RayAddress != "" {
		if cfg.AgentDir == "" {
			return nil, errors.New("stack: AgentDir (a directory holding council-agent) is required with RayAddress")
		}
		if s.Ray, err = rayjobs.New(cfg.RayAddress, rayjobs.WithLogger(log), rayjobs.WithHeaders(s.config.RayHeaders)); err != nil {
			return nil, err
		}
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = 4
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.runCtx, s.duplicate, s.ackWait = cancel, runCtx, cfg.DuplicateDelivery, cfg.AckWait
	if s.ackWait <= 0 {
		s.ackWait = 30 * time.Second
	}
	if err := s.startExecute(); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name  string
		types []string
		h     natsjs.Handler
		conc  int
	}{
		{"generate", generate.Types(), gen.Handle, conc},
		{"critique", critique.Types(), crit.Handle, conc},
	} {
		opts := []natsjs.Option{natsjs.WithLogger(log.With("function", f.name)), natsjs.WithConcurrency(f.conc),
			natsjs.WithBackoff(200*time.Millisecond, 5*time.Second), natsjs.WithAckWait(s.ackWait),
			natsjs.WithObserver(s.tel[f.name])}
		if cfg.DuplicateDelivery {
			opts = append(opts, natsjs.WithDuplicateDelivery())
		}
		c, err := natsjs.NewConsumer(s.JS, f.name, f.types, s.tel[f.name].Handler(f.h), opts...)
		if err != nil {
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := c.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.fail(fmt.Errorf("stack: %s consumer: %w", f.name, err))
			}
		}()
	}
	if cfg.RayExecutorAddr != "" {
		if err := s.startRayExecutor(runCtx, cfg, log.With("function", "rayexecutor")); err != nil {
			return nil, err
		}
	}
	if every := cfg.SweepEvery; every >= 0 {
		if every == 0 {
			every = 2 * time.Second
		}
		s.wg.Add(1)
		go s.sweep(runCtx, every)
	}
	return s, nil
}

// startRayExecutor serves the rayexecutor function (built by
// rayexecutor.FromConfig, as its command builds it) on cfg.RayExecutorAddr
// until ctx ends.
func (s *Stack) startRayExecutor(ctx context.Context, cfg Config, log *slog.Logger) error {
	set, err := rayexecutor.LoadSettings(func(string) string { return "" })
	if err != nil {
		return err
	}
	if cfg.RayExecutorWindow > 0 {
		set.Window = cfg.RayExecutorWindow
	}
	set.MaxTokens = cfg.RayExecutorMaxTokens
	fn, err := rayexecutor.FromConfig(ctx, s.config, set, rayexecutor.Deps{JS: s.JS, Logger: log, Completer: s.completer})
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.RayExecutorAddr)
	if err != nil {
		return fmt.Errorf("stack: rayexecutor: %w", err)
	}
	h := rayexecutor.NewHandler(log)
	h.Ready(rayexecutor.NewGRPCServer(fn, rayexecutor.RequireToken(s.config.QueryToken)...))
	s.RayExecutorAddr = ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := rayexecutor.Serve(ctx, ln, h); err != nil && !errors.Is(err, context.Canceled) {
			s.fail(fmt.Errorf("stack: rayexecutor: %w", err))
		}
	}()
	return nil
}

// executeConcurrency is how many events execute handles at once: short
// store and broker round trips, grouped per deliberation (Outbox.Apply),
// so a stage's results arriving together commit in a few groups. Knative
// runs it with containerConcurrency 50.
const executeConcurrency = 32

// startExecute starts a new execute function and its durable consumer,
// which resumes where the previous one stopped.
func (s *Stack) startExecute() error {
	tel := s.tel["execute"]
	fn, err := execute.FromConfig(s.runCtx, s.config, execute.Deps{JS: s.JS, Logger: s.execLog, Completer: s.completer, Telemetry: tel})
	if err != nil {
		return err
	}
	opts := []natsjs.Option{natsjs.WithLogger(s.execLog), natsjs.WithConcurrency(executeConcurrency),
		natsjs.WithBackoff(200*time.Millisecond, 5*time.Second), natsjs.WithAckWait(s.ackWait), natsjs.WithObserver(tel)}
	if s.duplicate {
		opts = append(opts, natsjs.WithDuplicateDelivery())
	}
	c, err := natsjs.NewConsumer(s.JS, "execute", execute.Types(), tel.Handler(fn.Handle), opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	done := make(chan struct{})
	s.mu.Lock()
	s.exec, s.execCancel, s.execDone = fn, cancel, done
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.fail(fmt.Errorf("stack: execute consumer: %w", err))
		}
	}()
	return nil
}

// Execute returns the running execute function (its queries: Routes,
// QueryHandler, Status).
func (s *Stack) Execute() *execute.Function {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exec
}

// RestartExecute stops the execute function (letting its in-flight events
// finish) and starts a new one over the same state and durable consumer,
// as a crash or a redeploy would; it returns the new function. The other
// functions, and any Ray job, go on.
func (s *Stack) RestartExecute() (*execute.Function, error) {
	s.mu.Lock()
	cancel, done := s.execCancel, s.execDone
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if err := s.startExecute(); err != nil {
		return nil, fmt.Errorf("stack: restart execute: %w", err)
	}
	return s.Execute(), nil
}

func (s *Stack) sweep(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			id := "tick-" + strconv.FormatInt(now.UnixNano(), 36)
			_ = s.Publisher.Emit(ctx, events.NewTick("council.dev/dev-stack", id, now))
		}
	}
}

func (s *Stack) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// Err returns the errors the functions' consumers stopped with, if any.
func (s *Stack) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Send publishes an event to the broker, as the Orchestrator would.
func (s *Stack) Send(ctx context.Context, e council.Envelope) error { return s.Publisher.Emit(ctx, e) }

// Outcome is how a deliberation ended: exactly one of Completed and Failed is set.
type Outcome struct {
	Event     event.Event
	Completed *events.Completed
	Failed    *events.Failed
	Cancelled *events.Cancelled
}

// Await waits for the deliberation.completed, deliberation.failed or
// deliberation.cancelled event of deliberation id and returns it. It reads the broker stream from the
// start, so it sees an outcome published before it was called.
func (s *Stack) Await(ctx context.Context, id string) (Outcome, error) {
	c, err := s.JS.OrderedConsumer(ctx, s.Topology.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{
			s.Topology.EventSubject(events.TypeDeliberationCompleted),
			s.Topology.EventSubject(events.TypeDeliberationFailed),
			s.Topology.EventSubject(events.TypeDeliberationCancelled),
		},
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("stack: await %s: %w", id, err)
	}
	it, err := c.Messages()
	if err != nil {
		return Outcome{}, err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return Outcome{}, fmt.Errorf("stack: await %s: %w", id, ctx.Err())
			}
			return Outcome{}, fmt.Errorf("stack: await %s: %w", id, err)
		}
		e, err := events.DecodeStructured(msg.Data())
		if err != nil {
			continue
		}
		if e.Type() == events.TypeDeliberationCompleted || e.Type() == events.TypeDeliberationFailed {
			// A large result comes by reference (the claim check).
			if e, err = natsjs.Resolve(ctx, s.JS, e); err != nil {
				return Outcome{}, fmt.Errorf("stack: await %s: %w", id, err)
			}
		}
		switch e.Type() {
		case events.TypeDeliberationCompleted:
			out, err := events.DecodeCompleted(e)
			if err == nil && out.DeliberationID == id {
				return Outcome{Event: e, Completed: &out}, nil
			}
		case events.TypeDeliberationFailed:
			out, err := events.DecodeFailed(e)
			if err == nil && out.DeliberationID == id {
				return Outcome{Event: e, Failed: &out}, nil
			}
		case events.TypeDeliberationCancelled:
			out, err := events.DecodeCancelled(e)
			if err == nil && out.DeliberationID == id {
				return Outcome{Event: e, Cancelled: &out}, nil
			}
		}
	}
}

// hostConfig is the configuration the functions' commands would read from
// their environment in this stack: the variables are set from cfg and parsed
// by host.LoadConfig, defaults and checks included.
func hostConfig(cfg Config, natsURL string) (host.Config, error) {
	env := maps.Clone(cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, map[string]string{
		"COUNCIL_NATS_URL":  natsURL,
		"COUNCIL_TRANSPORT": string(host.TransportJetStream),
		"COUNCIL_LLM_URL":   cfg.LLMURL,
		"COUNCIL_LLM_MODEL": cfg.LLMModel,
	})
	if cfg.LLMTimeout > 0 {
		env["COUNCIL_LLM_TIMEOUT"] = cfg.LLMTimeout.String()
	}
	if cfg.LLMRetries > 0 {
		env["COUNCIL_LLM_RETRIES"] = strconv.Itoa(cfg.LLMRetries)
	}
	if cfg.RayAddress != "" {
		env["COUNCIL_RAY_ADDRESS"] = cfg.RayAddress
		env["COUNCIL_RAY_AGENT_DIR"] = cfg.AgentDir
		for k, v := range map[string]int{"COUNCIL_RAY_POOL": cfg.RayPool, "COUNCIL_RAY_POOL_MAX": cfg.RayPoolMax, "COUNCIL_RAY_POOL_WORKERS": cfg.RayPoolWorkers} {
			if v > 0 {
				env[k] = strconv.Itoa(v)
			}
		}
		if cfg.RayPoolAckWait > 0 {
			env["COUNCIL_RAY_POOL_ACK_WAIT"] = cfg.RayPoolAckWait.String()
		}
	}
	if cfg.Legacy {
		env["COUNCIL_LEGACY_SUBJECTS"] = "true"
	}
	c, err := host.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return host.Config{}, fmt.Errorf("stack: %w", err)
	}
	return c, nil
}

// Telemetry returns the telemetry of function (execute, generate,
// critique): its metrics (MetricsHandler, what GET /metrics serves) and
// its tracer; nil for another name.
func (s *Stack) Telemetry(function string) *telemetry.Telemetry { return s.tel[function] }

// FlushTelemetry exports the spans and metrics every function has
// buffered (before reading a trace back from the backend).
func (s *Stack) FlushTelemetry(ctx context.Context) error {
	var errs []error
	for _, t := range s.tel {
		errs = append(errs, t.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Close stops the functions (letting in-flight events finish), then NATS.
func (s *Stack) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	for _, t := range s.tel {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = t.Shutdown(sctx)
		cancel()
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}
