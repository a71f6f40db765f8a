// Package jaeger runs a local Jaeger (v2, built on the OpenTelemetry
// Collector; scripts/jaeger.sh installs it into .cache/bin) as a real
// trace backend: an OTLP/HTTP receiver and in-memory storage on loopback
// ports of its own, and the query API that reads a whole trace back. The
// end-to-end tracing test and `council dev -trace` use it.
package jaeger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Version is the Jaeger release scripts/jaeger.sh installs.
const Version = "v1.76.0"

// config is an all-in-one Jaeger: OTLP over HTTP in, memory storage, the
// query service (UI and API) out; nothing else listens.
const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 20000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "127.0.0.1:${env:COUNCIL_JAEGER_QUERY_PORT}"
    grpc:
      endpoint: "127.0.0.1:${env:COUNCIL_JAEGER_QUERY_GRPC_PORT}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:${env:COUNCIL_JAEGER_OTLP_PORT}"
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// Binary returns the Jaeger binary: $COUNCIL_JAEGER_BIN, else
// .cache/bin/jaeger-<Version> in the repository holding dir (searched
// upwards), else an error saying how to install it.
func Binary(dir string) (string, error) {
	if p := os.Getenv("COUNCIL_JAEGER_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("jaeger: COUNCIL_JAEGER_BIN: %w", err)
		}
		return p, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		p := filepath.Join(d, ".cache", "bin", "jaeger-"+Version)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil || filepath.Dir(d) == d {
			return "", fmt.Errorf("jaeger %s is not installed (%s missing): run scripts/jaeger.sh install, or set COUNCIL_JAEGER_BIN", Version, p)
		}
	}
}

// Jaeger is a running Jaeger.
type Jaeger struct {
	// OTLPURL is the OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT).
	OTLPURL string
	// QueryURL is the UI and query API.
	QueryURL string

	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

// Start starts bin on free loopback ports, its configuration in dir, and
// returns once its query API answers (or ctx ends). Stop stops it.
func Start(ctx context.Context, bin, dir string) (*Jaeger, error) {
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	ports, err := freePorts(ctx, 3)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	j := &Jaeger{
		OTLPURL:  "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		QueryURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		done:     make(chan struct{}),
		log:      &lockedBuffer{},
	}
	// Stop ends it, not ctx: Jaeger outlives the start.
	j.cmd = exec.CommandContext(context.WithoutCancel(ctx), bin, "--config", "file:"+cfg) //nolint:gosec // the binary the caller chose
	j.cmd.Env = append(os.Environ(),
		"COUNCIL_JAEGER_OTLP_PORT="+strconv.Itoa(ports[0]),
		"COUNCIL_JAEGER_QUERY_PORT="+strconv.Itoa(ports[1]),
		"COUNCIL_JAEGER_QUERY_GRPC_PORT="+strconv.Itoa(ports[2]))
	j.cmd.Stdout, j.cmd.Stderr = j.log, j.log
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := j.cmd.Start(); err != nil {
		return nil, fmt.Errorf("jaeger: start %s: %w", bin, err)
	}
	go func() { _ = j.cmd.Wait(); close(j.done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		if ok, _ := j.get(ctx, "/api/services", nil); ok {
			return j, nil
		}
		select {
		case <-j.done:
			return nil, fmt.Errorf("jaeger: exited at start: %s", j.log.tail(2000))
		case <-ctx.Done():
			j.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			j.Stop()
			return nil, fmt.Errorf("jaeger: query API did not answer in 60s: %s", j.log.tail(2000))
		case <-tick.C:
		}
	}
}

// Log returns the last bytes Jaeger wrote.
func (j *Jaeger) Log() string { return j.log.tail(4000) }

// Stop stops Jaeger (its process group) and waits for it.
func (j *Jaeger) Stop() {
	if j.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
		<-j.done
	}
}

// TraceURL is the UI page of trace id.
func (j *Jaeger) TraceURL(traceID string) string { return j.QueryURL + "/trace/" + traceID }

// Span is a span as the query API returns it.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []struct {
		Timestamp int64      `json:"timestamp"`
		Fields    []KeyValue `json:"fields"`
	} `json:"logs"`
	ProcessID string `json:"processID"`
	// Service is the service.name of the span's process.
	Service string `json:"-"`
}

// Reference is a span's parent (CHILD_OF) or link (FOLLOWS_FROM).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag or a log field.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Tag returns the value of tag key as text, and whether the span has it.
func (s Span) Tag(key string) (string, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value), true
		}
	}
	return "", false
}

// Trace reads trace id back from the query API: every span stored so far,
// each with its service name. A trace not (yet) stored is an error.
func (j *Jaeger) Trace(ctx context.Context, traceID string) ([]Span, error) {
	var out struct {
		Data []struct {
			Spans     []Span `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	ok, err := j.get(ctx, "/api/traces/"+traceID, &out)
	if err != nil {
		return nil, err
	}
	if !ok || len(out.Data) == 0 {
		return nil, fmt.Errorf("jaeger: trace %s not found", traceID)
	}
	var spans []Span
	for _, d := range out.Data {
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			spans = append(spans, s)
		}
	}
	return spans, nil
}

// get reads path of the query API into out (when not nil); ok is false
// for an answer other than 200.
func (j *Jaeger) get(ctx context.Context, path string, out any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+path, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, nil
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return false, fmt.Errorf("jaeger: %s: %w", path, err)
		}
	}
	return true, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(ctx context.Context, n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough kept
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
