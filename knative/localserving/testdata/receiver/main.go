// Command receiver is the bare CloudEvents receiver the localserving tests
// and benchmarks run as a Service's instance: the CloudEvents SDK's HTTP
// receiver on $PORT, GET /health/readiness, and nothing else a council
// function does at start. Its knobs come from the environment:
//
//	RECEIVER_READY_DELAY   readiness answers 503 until this long after start (a slow start)
//	RECEIVER_CHILD=1       start a child process (to check that no process outlives Close)
//	RECEIVER_IGNORE_TERM=1 ignore SIGTERM (to check the SIGKILL after the grace)
//
// An event's extension "sleepms" makes its handling take that long. The
// reply is an event whose data is {"pid", "max_in_flight"}: this process and
// the most events it has handled at once. GET /pids answers {"pid", "child"};
// GET /env the variables a Knative container gets (PORT, K_*) and
// RECEIVER_FROM_CALLER.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/client"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		select {} // a child that lives until it is killed
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

// load counts the events in flight and the most seen at once.
type load struct {
	mu       sync.Mutex
	inFlight int
	max      int
}

func (l *load) enter() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight++
	l.max = max(l.max, l.inFlight)
	return l.max
}

func (l *load) leave() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	return l.max
}

func run() error {
	start := time.Now()
	if os.Getenv("RECEIVER_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	delay, err := time.ParseDuration(envOr("RECEIVER_READY_DELAY", "0s"))
	if err != nil {
		return fmt.Errorf("RECEIVER_READY_DELAY: %w", err)
	}
	child := 0
	if os.Getenv("RECEIVER_CHILD") == "1" {
		cmd := exec.Command(os.Args[0], "-child")
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("child: %w", err)
		}
		child = cmd.Process.Pid
	}

	var l load
	handle := func(ctx context.Context, e cloudevents.Event) *cloudevents.Event {
		l.enter()
		if ms, ok := e.Extensions()["sleepms"]; ok {
			n, _ := strconv.Atoi(fmt.Sprint(ms))
			select {
			case <-time.After(time.Duration(n) * time.Millisecond):
			case <-ctx.Done():
			}
		}
		reply := cloudevents.NewEvent()
		reply.SetID(e.ID() + "-reply")
		reply.SetSource("receiver")
		reply.SetType("receiver.reply")
		_ = reply.SetData(cloudevents.ApplicationJSON, map[string]int{"pid": os.Getpid(), "max_in_flight": l.leave()})
		return &reply
	}
	p, err := cehttp.New()
	if err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	events, err := client.NewHTTPReceiveHandler(context.Background(), p, handle)
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/readiness", func(w http.ResponseWriter, _ *http.Request) {
		if time.Since(start) < delay {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /pids", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{"pid": os.Getpid(), "child": child})
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, k := range []string{"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION", "RECEIVER_FROM_CALLER"} {
			env[k] = os.Getenv(k)
		}
		_ = json.NewEncoder(w).Encode(env)
	})
	mux.Handle("/", events)
	return http.ListenAndServe(":"+envOr("PORT", "8080"), mux)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
