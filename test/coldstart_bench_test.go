package test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"council.dev/shared/adapters/natsjs/natstest"
)

// coldStartFunctions are the shipped function binaries BenchmarkColdStart
// starts, by their package under council.dev/functions.
var coldStartFunctions = []string{"execute", "generate", "critique"}

// BenchmarkColdStart measures what a cold start of each shipped function
// binary costs, as Knative's activator waits for it: exec → the first 200
// from GET /health/readiness, on the HTTP transport (execute with a K_SINK,
// the Knative path), against a NATS whose topology was set up once
// (execute -setup, the council-setup Job). Each iteration starts, side by
// side under the same load, a bare CloudEvents SDK receiver
// (testdata/receiver) and then the function; ns/op is the function's, and
// x-receiver its ratio to the receiver's (receiver-ns/op). The functions
// run with COUNCIL_NATS_SETUP=bind (looking the topology up) and, for
// comparison, create (creating or updating it at every start).
//
//	go test -run '^$' -bench ColdStart -benchtime 10x .
func BenchmarkColdStart(b *testing.B) {
	dir := b.TempDir()
	receiver := buildBinary(b, dir, "receiver", "council.dev/test/testdata/receiver")
	bins := map[string]string{}
	for _, f := range coldStartFunctions {
		bins[f] = buildBinary(b, dir, f, "council.dev/functions/"+f+"/cmd/"+f)
	}
	srv := natstest.StartServer(b, nil)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"COUNCIL_NATS_URL=" + srv.ClientURL(),
		"COUNCIL_TRANSPORT=http",
		// Never called at start: a start must not wait on the LLM server.
		"COUNCIL_LLM_URL=http://127.0.0.1:9/v1",
		"COUNCIL_LOG_LEVEL=warn",
	}
	setup := exec.Command(bins["execute"], "-setup")
	setup.Env = env
	out, err := setup.CombinedOutput()
	if err != nil {
		b.Fatalf("execute -setup: %v\n%s", err, out)
	}
	b.Logf("execute -setup:\n%s", out)

	b.Run("receiver", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			total += coldStart(b, receiver, env)
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/op")
	})
	for _, mode := range []string{"bind", "create"} {
		for _, f := range coldStartFunctions {
			fenv := slices.Concat(env, []string{"COUNCIL_NATS_SETUP=" + mode})
			if f == "execute" {
				// The Knative path: fan-out over HTTP, no publisher on
				// the broker stream.
				fenv = append(fenv, "K_SINK=http://127.0.0.1:9/")
			}
			b.Run(f+"/"+mode, func(b *testing.B) {
				var fn, base time.Duration
				for range b.N {
					base += coldStart(b, receiver, env)
					fn += coldStart(b, bins[f], fenv)
				}
				b.ReportMetric(float64(fn.Nanoseconds())/float64(b.N), "ns/op")
				b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "receiver-ns/op")
				b.ReportMetric(float64(fn)/float64(base), "x-receiver")
			})
		}
	}
}

// buildBinary builds package pkg into dir/name as the images are built
// (CGO off, paths trimmed) and returns its path.
func buildBinary(b *testing.B, dir, name, pkg string) string {
	b.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// coldStart execs bin with env on a free PORT, polls GET /health/readiness
// until it answers 200, kills the process and returns exec → 200.
func coldStart(b *testing.B, bin string, env []string) time.Duration {
	b.Helper()
	port := freeTCPPort(b)
	cmd := exec.Command(bin)
	cmd.Env = slices.Concat(env, []string{fmt.Sprintf("PORT=%d", port)})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	url := fmt.Sprintf("http://127.0.0.1:%d/health/readiness", port)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed on purpose: its exit error says so
	}()
	// Polled often: the interval bounds the error of the figure.
	tick := time.NewTicker(200 * time.Microsecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if resp, err := client.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			b.Fatalf("%s exited before it was ready: %v\n%s", filepath.Base(bin), err, tail(stderr.String()))
		case <-deadline:
			_ = cmd.Process.Kill()
			exited <- <-exited // its log is complete once it has exited
			b.Fatalf("%s not ready within 30s\n%s", filepath.Base(bin), tail(stderr.String()))
		case <-tick.C:
		}
	}
}

// freeTCPPort returns a loopback port nothing listens on now.
func freeTCPPort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// tail is the last lines of a process's log, for a failure message.
func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
