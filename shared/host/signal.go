package host

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context that is cancelled on SIGINT or SIGTERM, the
// signal Kubernetes sends to start the drain. The cancel function stops the
// signal handling; call it when the function exits.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
