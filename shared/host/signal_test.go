package host_test

import (
	"syscall"
	"testing"
	"time"

	"council.dev/shared/host"
)

// Not parallel: it signals the whole test process.
func TestSignalContextIsCancelledBySIGTERM(t *testing.T) {
	ctx, stop := host.SignalContext()
	defer stop()

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by SIGTERM")
	}
}
