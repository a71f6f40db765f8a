// Command kingress runs council's test-cluster Knative networking layer in
// one process: the Ingress controller and the reverse proxy it feeds (see
// package council.dev/knative/kingress). It is test infrastructure only.
//
// Flags (each with an environment variable that sets its default):
//
//	-addr        KINGRESS_ADDR        listen address (":8080")
//	-class       KINGRESS_CLASS       ingress class (council.ingress.networking.knative.dev)
//	-domain      KINGRESS_DOMAIN      load balancer domain reported in status
//	                                  (kingress.kingress-system.svc.cluster.local)
//	-kubeconfig  KUBECONFIG           kubeconfig file; empty means in-cluster config
//	-workers     KINGRESS_WORKERS     reconcile workers (2)
//	-log-level   KINGRESS_LOG_LEVEL   debug, info, warn or error (info)
//
// Readiness: GET /healthz on the listener (any host the table does not
// route) answers 200 once the controller has synced.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/networking/pkg/client/clientset/versioned"

	"council.dev/knative/kingress"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kingress:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func run() error {
	workersDefault, err := strconv.Atoi(env("KINGRESS_WORKERS", "2"))
	if err != nil {
		return fmt.Errorf("KINGRESS_WORKERS: %w", err)
	}
	var (
		addr       = flag.String("addr", env("KINGRESS_ADDR", ":8080"), "listen address for proxied traffic and /healthz")
		class      = flag.String("class", env("KINGRESS_CLASS", kingress.DefaultClass), "ingress class to serve")
		domain     = flag.String("domain", env("KINGRESS_DOMAIN", kingress.DefaultDomain), "load balancer domain reported in Ingress status")
		kubeconfig = flag.String("kubeconfig", env("KUBECONFIG", ""), "kubeconfig file; empty means in-cluster config")
		workers    = flag.Int("workers", workersDefault, "reconcile workers")
		logLevel   = flag.String("log-level", env("KINGRESS_LOG_LEVEL", "info"), "log level: debug, info, warn or error")
	)
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}

	table := kingress.NewTable()
	ctrl, err := kingress.NewController(client, table,
		kingress.WithClass(*class), kingress.WithDomain(*domain), kingress.WithLogger(log))
	if err != nil {
		return err
	}
	proxy, err := kingress.NewProxy(table, kingress.WithReady(ctrl.Synced), kingress.WithProxyLogger(log))
	if err != nil {
		return err
	}
	srv := kingress.NewServer(*addr, proxy)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	errs := make(chan error, 2)
	go func() { errs <- ctrl.Run(ctx, *workers) }()
	go func() {
		log.Info("kingress: listening", "addr", *addr, "class", *class, "domain", *domain)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("listen: %w", err)
			return
		}
		errs <- nil
	}()

	var first error
	select {
	case first = <-errs:
		stop()
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && first == nil {
		first = fmt.Errorf("shutdown: %w", err)
	}
	return first
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (pass -kubeconfig outside a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
