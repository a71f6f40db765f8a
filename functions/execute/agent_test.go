package execute_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestJobRequest(t *testing.T) {
	req := rayRequest(t, nil)
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := events.DecodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	derived := council.DeliberationID(req.Source(), req.ID())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "req.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := rayRequest(t, func(data map[string]any) { delete(data, "agents") })
	badBody, _ := json.Marshal(bad)

	for _, tc := range []struct {
		name     string
		env      map[string]string
		wantID   string
		err      string
		fromEnvs bool // the job started by hand: the task is in the environment
	}{
		{"id only (the jobs execute submits)", map[string]string{execute.EnvDeliberationID: "dlb-0"}, "dlb-0", "", false},
		{"bad id", map[string]string{execute.EnvDeliberationID: "a.*.>"}, "", "a.*.>", false},
		{"env", map[string]string{execute.EnvRequest: base64.StdEncoding.EncodeToString(body), execute.EnvDeliberationID: "dlb-1"}, "dlb-1", "", true},
		{"file relative to the working dir", map[string]string{execute.EnvRequestFile: "req.json", execute.EnvDeliberationID: "dlb-2"}, "dlb-2", "", true},
		{"id derived from the event", map[string]string{execute.EnvRequest: base64.StdEncoding.EncodeToString(body)}, derived, "", true},
		{"no request", map[string]string{}, "", "no request", false},
		{"not base64", map[string]string{execute.EnvRequest: "{not base64"}, "", "not base64", false},
		{"missing file", map[string]string{execute.EnvRequestFile: "nope.json"}, "", "nope.json", false},
		{"not an event", map[string]string{execute.EnvRequest: base64.StdEncoding.EncodeToString([]byte("[1]"))}, "", "not a structured CloudEvent", false},
		{"invalid task", map[string]string{execute.EnvRequest: base64.StdEncoding.EncodeToString(badBody)}, "", "agents", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, task, err := execute.JobRequest(func(k string) string { return tc.env[k] }, dir)
			if tc.err != "" {
				if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want ErrInvalid saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.wantID {
				t.Errorf("id %q, want %q", id, tc.wantID)
			}
			if !tc.fromEnvs {
				if task != nil {
					t.Errorf("task %v, want none (read from the stored state)", task)
				}
				return
			}
			if task == nil {
				t.Fatal("no task, want the one in the environment")
			}
			if diff := cmp.Diff(want, *task); diff != "" {
				t.Errorf("task (-want +got):\n%s", diff)
			}
		})
	}
}

func agentTask(t *testing.T, edit func(map[string]any)) council.Task {
	t.Helper()
	task, err := events.DecodeRequest(rayRequest(t, edit))
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestAgentStoresAMissingDeliberation(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: &counciltest.Completer{}, Now: c.Now}
	d, err := agent.Run(context.Background(), "dlb-by-hand", agentTask(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCompleted || d.Task.Backend != council.BackendRay {
		t.Fatalf("%s (backend %s)", execute.Summary(d), d.Task.Backend)
	}
	if got := execute.Summary(d); !strings.HasPrefix(got, "deliberation dlb-by-hand completed: winner ") {
		t.Errorf("summary %q", got)
	}
	// 3 agents, rounds 2, peers 2: 3 proposals and 6 critiques per stage.
	if len(d.Proposals) != 9 || len(d.Critiques) != 18 {
		t.Errorf("stored %d proposals, %d critiques; want 9 and 18", len(d.Proposals), len(d.Critiques))
	}
	if diff := cmp.Diff([]string{events.TypeDeliberationCompleted}, em.Types()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestAgentRecordsFailure(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	llm := &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
		return council.Completion{}, council.Invalidf("model refused")
	}}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: llm, Now: c.Now}
	d, err := agent.Run(context.Background(), "dlb-fails", agentTask(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusFailed || !strings.Contains(d.Reason, "all agents failed") || len(d.Failures) != 3 {
		t.Errorf("%s with %d failures", execute.Summary(d), len(d.Failures))
	}
	f, err := events.DecodeFailed(events.ToEvent(em.Sent()[0]))
	if err != nil || len(f.Failures) != 3 {
		t.Errorf("failed event: %v, %d failures", err, len(f.Failures))
	}
}

func TestAgentDoesNotRunAnEndedDeliberation(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	task := agentTask(t, nil)
	d, err := council.New("dlb-ended", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	d.Fail("timeout: timeout_seconds=3600 elapsed", t0.Add(time.Hour))
	d.Outbox = nil
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	llm := &counciltest.Completer{}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: llm, Now: c.Now}
	got, err := agent.Run(context.Background(), "dlb-ended", task)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != council.StatusFailed || len(llm.Requests()) != 0 || len(em.Sent()) != 0 {
		t.Errorf("status %s, %d LLM calls, %d events; want failed and nothing done", got.Status, len(llm.Requests()), len(em.Sent()))
	}
}

// TestAgentKeepsTheStoredDeadline: the timeout counts from when execute
// accepted the request, not from when the job started.
func TestAgentKeepsTheStoredDeadline(t *testing.T) {
	store, em := counciltest.NewStore(), &counciltest.Emitter{}
	task := agentTask(t, func(data map[string]any) { constraints(data)["timeout_seconds"] = 1 })
	d, err := council.New("dlb-late", task, time.Now().Add(-2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: &counciltest.Completer{}}
	got, err := agent.Run(context.Background(), "dlb-late", task)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != council.StatusFailed || !strings.Contains(got.Reason, "timeout") {
		t.Errorf("%s; want a timeout", execute.Summary(got))
	}
}

func TestAgentStoppedRecordsNothing(t *testing.T) {
	store, em := counciltest.NewStore(), &counciltest.Emitter{}
	ctx, cancel := context.WithCancel(context.Background())
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
		cancel() // SIGTERM from Ray while the agents work
		<-ctx.Done()
		return council.Completion{}, council.Unavailablef("cancelled")
	}}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: llm}
	if _, err := agent.Run(ctx, "dlb-stopped", agentTask(t, nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	d, _, err := store.Get(context.Background(), "dlb-stopped")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusRunning || len(em.Sent()) != 0 {
		t.Errorf("stored %s with %d events; a stopped job leaves the decision to execute", d.Status, len(em.Sent()))
	}
}
