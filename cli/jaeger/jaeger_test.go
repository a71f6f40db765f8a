package jaeger_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"council.dev/cli/jaeger"
)

// TestStartAndQuery: the installed Jaeger starts on ports of its own and
// answers its query API; a trace it never got is an error. A missing
// Jaeger fails (scripts/jaeger.sh install; make test does).
func TestStartAndQuery(t *testing.T) {
	bin, err := jaeger.Binary(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j, err := jaeger.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Stop()
	if !strings.HasPrefix(j.OTLPURL, "http://127.0.0.1:") || !strings.HasPrefix(j.QueryURL, "http://127.0.0.1:") {
		t.Errorf("urls %s, %s: want loopback", j.OTLPURL, j.QueryURL)
	}
	if _, err := j.Trace(ctx, "0102030405060708090a0b0c0d0e0f10"); err == nil {
		t.Error("a trace never sent was found")
	}
}
