// Command receiver is the baseline of BenchmarkColdStart: a bare
// CloudEvents SDK receiver over HTTP on PORT that answers every event with
// nothing and GET /health/readiness with 200, what a Go function costs to
// start with no dependency of its own.
package main

import (
	"context"
	"fmt"
	"log"
	nethttp "net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

func main() {
	port, err := strconv.Atoi(os.Getenv("PORT"))
	if err != nil {
		log.Fatalf("receiver: PORT: %v", err)
	}
	ready := func(w nethttp.ResponseWriter, _ *nethttp.Request) {
		w.WriteHeader(nethttp.StatusOK)
		fmt.Fprintln(w, "ok")
	}
	p, err := cloudevents.NewHTTP(cehttp.WithPort(port), cehttp.WithGetHandlerFunc(ready))
	if err != nil {
		log.Fatalf("receiver: protocol: %v", err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		log.Fatalf("receiver: client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.StartReceiver(ctx, func(cloudevents.Event) {}); err != nil {
		log.Fatalf("receiver: %v", err)
	}
}
