package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/vllm"
)

// ConnectNATS connects to cfg.NATSURL (retrying while the server comes up)
// and makes sure council's streams and bucket exist.
func ConnectNATS(ctx context.Context, cfg Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("council-"+name),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("host: connect nats %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("host: jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := natsjs.Setup(sctx, js, cfg.NATS); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("host: set up streams: %w", err)
	}
	return nc, js, nil
}

// NewCompleter returns the LLM client cfg describes.
func NewCompleter(cfg Config, log *slog.Logger) (*vllm.Client, error) {
	return vllm.New(cfg.LLMURL, cfg.LLMModel,
		vllm.WithAllowedModels(cfg.LLMModels...), vllm.WithTimeout(cfg.LLMTimeout),
		vllm.WithRetries(cfg.LLMRetries), vllm.WithAPIKey(cfg.LLMAPIKey), vllm.WithLogger(log))
}

// Serve runs function name until ctx ends: the HTTP CloudEvents receiver on
// cfg.Port always (Knative, health routes), and, when cfg.Transport is
// jetstream, a durable JetStream consumer named name for types on js as
// well. It returns when both have stopped.
func Serve(ctx context.Context, cfg Config, name string, types []string, h Handler, js jetstream.JetStream, log *slog.Logger, opts ...Option) error {
	srv, err := NewHTTPServer(cfg.Addr(), h, append([]Option{WithLogger(log)}, opts...)...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	running := 1
	go func() { errc <- srv.Serve(ctx) }()
	if cfg.Transport == TransportJetStream {
		if js == nil {
			return errors.New("host: transport jetstream needs a NATS connection")
		}
		c, err := natsjs.NewConsumer(js, name, types, natsjs.Handler(h), natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
		if err != nil {
			return err
		}
		running++
		go func() { errc <- c.Run(ctx) }()
	}
	log.Info("function started", "function", name, "transport", cfg.Transport, "addr", cfg.Addr())
	var errs []error
	for ; running > 0; running-- {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
		cancel() // one stopped: stop the other
	}
	return errors.Join(errs...)
}
