package host_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := host.LoadConfig(env(nil))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := host.Config{
		Port:       8080,
		Transport:  host.TransportHTTP,
		NATSURL:    "nats://127.0.0.1:4222",
		LLMURL:     "http://127.0.0.1:8088/v1",
		LLMModel:   "council-tiny",
		LLMModels:  []string{"council-tiny"},
		LLMTimeout: 120 * time.Second,
		LLMRetries: 3,
		LogLevel:   "info",
		NATS:       natsjs.DefaultTopology(),

		RayPoolWorkers: host.DefaultRayPoolWorkers,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if got.Addr() != ":8080" || got.SourceFor("execute") != "council.dev/execute" {
		t.Errorf("Addr() = %q, SourceFor(execute) = %q", got.Addr(), got.SourceFor("execute"))
	}
}

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	t.Parallel()
	// The Ray cluster's copy of the LLM key (a mounted Secret there).
	keyFile := filepath.Join(t.TempDir(), "llm-api-key")
	if err := os.WriteFile(keyFile, []byte("sk-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := host.LoadConfig(env(map[string]string{
		"COUNCIL_RAY_JOB_LLM_API_KEY_FILE": keyFile,
		"PORT":                             " 9090 ",
		"COUNCIL_TRANSPORT":                "JetStream",
		"COUNCIL_NATS_URL":                 "nats://nats.council:4222",
		"COUNCIL_LLM_URL":                  "https://llm.example/v1",
		"COUNCIL_LLM_MODEL":                "qwen",
		"COUNCIL_LLM_MODELS":               "llama, qwen,,qwen ",
		"COUNCIL_LLM_TIMEOUT":              "2m30s",
		"COUNCIL_LLM_RETRIES":              "0",
		"COUNCIL_LLM_API_KEY":              "sk-test",
		"K_SINK":                           "http://broker-ingress.knative-eventing.svc/council/default",
		"COUNCIL_SOURCE":                   "council.dev/custom",
		"COUNCIL_RAY_ADDRESS":              "http://127.0.0.1:8265",
		"COUNCIL_RAY_AGENT_DIR":            "gcs://_ray_pkg_council_agent.zip",
		"COUNCIL_LOG_LEVEL":                "DEBUG",
		"COUNCIL_LEGACY_SUBJECTS":          "TRUE",
		"COUNCIL_RAY_POOL":                 "2",
		"COUNCIL_RAY_POOL_MAX":             "4",
		"COUNCIL_RAY_POOL_WORKERS":         "3",
		"COUNCIL_RAY_POOL_ACK_WAIT":        "10s",
	}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := host.Config{
		Port:           9090,
		Transport:      host.TransportJetStream,
		NATSURL:        "nats://nats.council:4222",
		LLMURL:         "https://llm.example/v1",
		LLMModel:       "qwen",
		LLMModels:      []string{"llama", "qwen"},
		LLMTimeout:     150 * time.Second,
		LLMRetries:     0,
		LLMAPIKey:      "sk-test",
		Sink:           "http://broker-ingress.knative-eventing.svc/council/default",
		Source:         "council.dev/custom",
		RayAddress:     "http://127.0.0.1:8265",
		RayAgentDir:    "gcs://_ray_pkg_council_agent.zip",
		RayPool:        2,
		RayPoolMax:     4,
		RayPoolWorkers: 3,
		RayPoolAckWait: 10 * time.Second,
		LogLevel:       "debug",
		NATS:           natsjs.DefaultTopology(),
		LegacySubjects: true,

		RayJobLLMAPIKeyFile: keyFile,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	for k, v := range got.JobEnv() {
		if strings.Contains(v, "sk-test") {
			t.Errorf("JobEnv()[%s] carries the LLM API key", k)
		}
	}
	// A job configured from JobEnv reaches the same NATS and LLM server,
	// with the key read from the file the Ray cluster keeps.
	job, err := host.LoadConfig(env(got.JobEnv()))
	if err != nil {
		t.Fatalf("LoadConfig(JobEnv()): %v", err)
	}
	if job.NATSURL != got.NATSURL || job.LLMURL != got.LLMURL || job.LLMModel != got.LLMModel ||
		!cmp.Equal(job.LLMModels, got.LLMModels) || job.LLMTimeout != got.LLMTimeout ||
		job.LLMRetries != got.LLMRetries || job.LLMAPIKey != got.LLMAPIKey || job.LogLevel != got.LogLevel ||
		job.LegacySubjects != got.LegacySubjects {
		t.Errorf("config from JobEnv %+v differs from %+v", job, got)
	}
	if got.SourceFor("execute") != "council.dev/custom" {
		t.Errorf("SourceFor(execute) = %q, want COUNCIL_SOURCE", got.SourceFor("execute"))
	}
}

func TestLoadConfigRejectsInvalidValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
	}{
		{"PORT", "http"},
		{"PORT", "0"},
		{"PORT", "70000"},
		{"COUNCIL_TRANSPORT", "kafka"},
		{"COUNCIL_NATS_URL", "127.0.0.1:4222"},
		{"COUNCIL_LLM_URL", "ftp://llm/v1"},
		{"COUNCIL_LLM_URL", "http://%zz"},
		{"K_SINK", "broker-ingress"},
		{"COUNCIL_RAY_ADDRESS", "/dashboard"},
		{"COUNCIL_LLM_MODELS", " , "},
		{"COUNCIL_LLM_MODELS", "llama,qwen"}, // lacks the default council-tiny
		{"COUNCIL_LLM_TIMEOUT", "120"},
		{"COUNCIL_LLM_TIMEOUT", "-1s"},
		{"COUNCIL_LLM_RETRIES", "three"},
		{"COUNCIL_LLM_RETRIES", "-1"},
		{"COUNCIL_LOG_LEVEL", "verbose"},
		{"COUNCIL_LEGACY_SUBJECTS", "yes"},
		{"COUNCIL_LEGACY_SUBJECTS", "on"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			_, err := host.LoadConfig(env(map[string]string{tt.name: tt.value}))
			if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), tt.name+"=") {
				t.Errorf("LoadConfig(%s=%q) = %v, want an error wrapping ErrInvalid that names %s", tt.name, tt.value, err, tt.name)
			}
		})
	}
}

func TestLoadConfigReportsEveryInvalidVariable(t *testing.T) {
	t.Parallel()
	_, err := host.LoadConfig(env(map[string]string{"PORT": "x", "COUNCIL_LLM_TIMEOUT": "y"}))
	if err == nil || !strings.Contains(err.Error(), "PORT=") || !strings.Contains(err.Error(), "COUNCIL_LLM_TIMEOUT=") {
		t.Errorf("LoadConfig = %v, want both variables named", err)
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level     string
		wantDebug bool
		wantInfo  bool
	}{
		{"debug", true, true},
		{"info", false, true},
		{"WARN", false, false},
		{"", false, true},
		{"nonsense", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l := host.NewLogger(tt.level, &buf)
			l.Debug("d")
			l.Info("i", "k", "v")
			var msgs []string
			for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("not JSON: %q: %v", line, err)
				}
				msgs = append(msgs, rec["msg"].(string))
			}
			var want []string
			if tt.wantDebug {
				want = append(want, "d")
			}
			if tt.wantInfo {
				want = append(want, "i")
			}
			if diff := cmp.Diff(want, msgs); diff != "" {
				t.Errorf("logged messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigNATSTopology(t *testing.T) {
	env := map[string]string{
		"COUNCIL_NATS_REPLICAS": "3", "COUNCIL_NATS_BUCKET": "b", "COUNCIL_NATS_INDEX_BUCKET": "i", "COUNCIL_NATS_TOKENS_STREAM": "T",
		"COUNCIL_NATS_TOKENS_SUBJECTS": "tok.>", "COUNCIL_NATS_TOKENS_MAX_AGE": "2h", "COUNCIL_NATS_STATE_TTL": "48h",
	}
	c, err := host.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := natsjs.DefaultTopology()
	want.IndexBucket = "i"
	want.Replicas, want.Bucket, want.TokensStream, want.TokensSubjectPrefix, want.TokensMaxAge = 3, "b", "T", "tok", 2*time.Hour
	want.BucketTTL = 48 * time.Hour
	if diff := cmp.Diff(want, c.NATS); diff != "" {
		t.Errorf("topology (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{"COUNCIL_NATS_REPLICAS": "0", "COUNCIL_NATS_TOKENS_SUBJECTS": "tok", "COUNCIL_NATS_TOKENS_MAX_AGE": "soon", "COUNCIL_NATS_STATE_TTL": "-1h"} {
		if _, err := host.LoadConfig(func(name string) string {
			if name == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err %v, want one naming the variable", k, v, err)
		}
	}
}
