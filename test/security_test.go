package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/rayjobs/raytest"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

// logBuffer collects the stack's JSON log lines from every goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// debugLogger logs everything, prompts and completions included, to b.
func debugLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// findSecrets fails t for each secret found in text, naming where.
func findSecrets(t *testing.T, where, text string, secrets map[string]string) {
	t.Helper()
	for name, v := range secrets {
		if strings.Contains(text, v) {
			i := strings.Index(text, v)
			t.Errorf("%s carries %s: …%s…", where, name, text[max(0, i-120):min(len(text), i+len(v)+40)])
		}
	}
}

// scanStreams reads every message of every stream (events, tokens, KV
// buckets) and fails t for each secret found in one.
func scanStreams(ctx context.Context, t *testing.T, js jetstream.JetStream, secrets map[string]string) int {
	t.Helper()
	n := 0
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("stream %s seq %d: %v", name, seq, err)
			}
			n++
			hdr, _ := json.Marshal(m.Header)
			findSecrets(t, "message "+m.Subject+" of "+name, string(m.Data)+string(hdr), secrets)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func writeSecretFile(t *testing.T, name, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretsStayOutOfLogsAndEvents runs a deliberation on the local stack
// configured with an LLM API key, NATS credentials (the embedded server
// requires them) and a query token, with every log at debug level, and
// finds none of them in any log line, event or stored state.
func TestSecretsStayOutOfLogsAndEvents(t *testing.T) {
	secrets := map[string]string{
		"the LLM API key":   "sk-council-e2e-4f1c9a",
		"the NATS password": "nats-pw-e2e-7d2b3e",
		"the query token":   "query-token-e2e-91ab0c",
	}
	var logs logBuffer
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second, Logger: debugLogger(&logs),
		Env: map[string]string{
			"COUNCIL_LLM_API_KEY":        secrets["the LLM API key"],
			"COUNCIL_NATS_USER":          "council",
			"COUNCIL_NATS_PASSWORD_FILE": writeSecretFile(t, "nats-password", secrets["the NATS password"]),
			"COUNCIL_QUERY_TOKEN":        secrets["the query token"],
			"COUNCIL_LOG_LEVEL":          "debug",
		},
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)

	// The stack's NATS refuses a client without the credentials.
	if nc, err := nats.Connect(s.URL, nats.NoReconnect(), nats.Timeout(20*time.Second)); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("connect without credentials: %v; want an authorization violation", err)
	}

	e := request(t, 48)
	id := send(t, s, e)
	c := await(t, s, id)
	checkCompleted(t, c, "task-42")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if n := scanStreams(ctx, t, s.JS, secrets); n == 0 {
		t.Fatal("no stream message read")
	}
	text := logs.String()
	if !strings.Contains(text, id) || !strings.Contains(text, "deliberation completed") {
		t.Fatalf("the logs do not show the deliberation (%d bytes)", len(text))
	}
	findSecrets(t, "the logs", text, secrets)
	if err := s.Err(); err != nil {
		findSecrets(t, "the stack's error", err.Error(), secrets)
	}
}

// TestRayJobCarriesNoSecret runs a backend ray deliberation on the real Ray
// head with an LLM API key configured: the council-agent job reads the key
// from the file the Ray cluster keeps (COUNCIL_RAY_JOB_LLM_API_KEY_FILE,
// here a file on this machine, where the local Ray runs), and nothing Ray
// shows of the job — its info, runtime_env, entrypoint, logs — carries it.
func TestRayJobCarriesNoSecret(t *testing.T) {
	secrets := map[string]string{"the LLM API key": "sk-council-ray-6e0d2a"}
	keyFile := writeSecretFile(t, "llm-api-key", secrets["the LLM API key"])
	addr := raytest.Address(t)
	var logs logBuffer
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second, Logger: debugLogger(&logs),
		RayAddress: addr, AgentDir: buildAgent(t),
		Env: map[string]string{
			"COUNCIL_LLM_API_KEY":              secrets["the LLM API key"],
			"COUNCIL_RAY_JOB_LLM_API_KEY_FILE": keyFile,
		},
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)

	id := send(t, s, onBackend(t, request(t, 48), "ray"))
	sid := execute.SubmissionID(id, 1)
	// The job's info as the Jobs API (and the dashboard) shows it to
	// anyone who reaches it.
	var raw []byte
	eventually(t, 3*time.Minute, "job "+sid+" listed by Ray", func() bool {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, addr+"/api/jobs/"+sid, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		raw, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	var info struct {
		Entrypoint string `json:"entrypoint"`
		RuntimeEnv struct {
			EnvVars map[string]string `json:"env_vars"`
		} `json:"runtime_env"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("job info %s: %v", raw, err)
	}
	findSecrets(t, "the Ray job's info", string(raw), secrets)
	env := info.RuntimeEnv.EnvVars
	if env["COUNCIL_LLM_API_KEY_FILE"] != keyFile {
		t.Errorf("job env COUNCIL_LLM_API_KEY_FILE = %q, want %q (the key's place on the cluster)", env["COUNCIL_LLM_API_KEY_FILE"], keyFile)
	}
	if _, ok := env["COUNCIL_LLM_API_KEY"]; ok {
		t.Error("the job's environment has COUNCIL_LLM_API_KEY")
	}
	if env[execute.EnvDeliberationID] != id {
		t.Errorf("job env %s = %q, want %q: not the job of this deliberation", execute.EnvDeliberationID, env[execute.EnvDeliberationID], id)
	}

	// The job ran with the key it read from the file.
	ev := awaitEvent(t, s, id)
	c, err := events.DecodeCompleted(ev)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, &c, "task-42")
	var d *council.Deliberation
	eventually(t, time.Minute, "the job's end recorded", func() bool {
		d, _, err = s.Store.Get(context.Background(), id)
		return err == nil && d.Job != nil && d.Job.LogTail != ""
	})
	findSecrets(t, "the job's recorded log tail", d.Job.LogTail, secrets)
	findSecrets(t, "the logs", logs.String(), secrets)
}
