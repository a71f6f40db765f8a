package test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/events/legacy/legacytest"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

// pythonClient returns the interpreter with grpcio and grpcio-tools
// (COUNCIL_PYCLIENT_PYTHON, else the venv of scripts/pyclient.sh) and a
// directory holding the Python client generated from the façade's proto by
// grpcio-tools. It fails the test when they are missing.
func pythonClient(t *testing.T) (python, gen string) {
	t.Helper()
	python = os.Getenv("COUNCIL_PYCLIENT_PYTHON")
	if python == "" {
		python = filepath.Join("..", ".cache", "pyclient", "venv", "bin", "python")
	}
	if out, err := exec.Command(python, "-c", "import grpc, grpc_tools").CombinedOutput(); err != nil {
		t.Fatalf("no Python with grpcio and grpcio-tools at %s (run scripts/pyclient.sh install, or set COUNCIL_PYCLIENT_PYTHON): %v\n%s",
			python, err, out)
	}
	gen = t.TempDir()
	cmd := exec.Command(python, "-m", "grpc_tools.protoc", "-I", filepath.Join("..", "functions", "rayexecutor", "proto"),
		"--python_out="+gen, "--grpc_python_out="+gen, "fleet/ray_executor/v1/ray_executor.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("grpcio-tools: generate the client: %v\n%s", err, out)
	}
	return python, gen
}

// trap is a TCP listener that counts the connections made to it: the
// vllm_url the callers send points at it.
type trap struct {
	ln    net.Listener
	conns atomic.Int64
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return tr
}

// submitted is the answer to a submission.
type submitted struct {
	TaskID         string `json:"task_id"`
	DeliberationID string `json:"deliberation_id"`
	Status         string `json:"status"`
}

// fleetRun is what testdata/fleet_client.py prints.
type fleetRun struct {
	Backlog []struct {
		submitted
		Message string `json:"message"`
		Role    string `json:"role"`
	} `json:"backlog"`
	Extraction submitted `json:"extraction"`
	Derivation submitted `json:"derivation"`
	Retry      struct {
		First      string `json:"first"`
		FirstError string `json:"first_error"`
		Second     string `json:"second"`
		Third      string `json:"third"`
	} `json:"retry"`
	Invalid struct {
		Code    string `json:"code"`
		Details string `json:"details"`
	} `json:"invalid"`
	Jobs []struct {
		JobID  string `json:"job_id"`
		TaskID string `json:"task_id"`
	} `json:"jobs"`
	Final map[string]struct {
		Status       string `json:"status"`
		ErrorMessage string `json:"error_message"`
		Result       *struct {
			AgentID  string            `json:"agent_id"`
			Proposal string            `json:"proposal"`
			Score    float64           `json:"score"`
			Metadata map[string]string `json:"metadata"`
		} `json:"result"`
	} `json:"final"`
	Status struct {
		Status                           string
		Total, Active, Completed, Failed int64
		AverageMS                        float64 `json:"average_ms"`
	} `json:"status"`
}

// TestRayExecutorPythonClient drives the old Ray Executor's gRPC API from
// a Python client generated with grpcio-tools, as the fleet's callers do,
// on the local stack with the real LLM server: a backlog-review ceremony
// (3 roles of 3 agents), a task extraction and a task derivation (whose
// first try times out on the client and is retried), followed with
// GetDeliberationStatus until done; then it reads agent.response.* as each
// old consumer does (events/legacy/legacytest), and checks that the
// vllm_url the callers sent was never contacted.
func TestRayExecutorPythonClient(t *testing.T) {
	python, gen := pythonClient(t)
	tr := newTrap(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(), LLMTimeout: 2 * time.Minute,
		SweepEvery: time.Second, Legacy: true, RayExecutorAddr: "127.0.0.1:0", RayExecutorMaxTokens: 64,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)

	const agentsPerRole = 3
	roles := []string{"ARCHITECT", "QA", "DEVOPS"}
	scenario, err := json.Marshal(map[string]any{
		"ceremony_id": "BRC-7", "story_id": "ST-7", "plan_id": "plan-7", "roles": roles, "agents_per_role": agentsPerRole,
		"model": vllmtest.Model(), "vllm_url": "http://" + tr.ln.Addr().String(), "timeout_seconds": 480,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "fleet_client.py"), gen, s.RayExecutorAddr, string(scenario))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python client: %v\n%s (stack: %v)", err, stderr.String(), s.Err())
	}
	var run fleetRun
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("python client output: %v\n%s", err, stdout.String())
	}

	// Submissions: council's deliberation ids, answered "submitted".
	ids := map[string]string{} // deliberation → task
	for _, b := range run.Backlog {
		if b.Status != "submitted" || !strings.HasPrefix(b.DeliberationID, "dlb-") || b.TaskID != "ceremony-BRC-7:story-ST-7:role-"+b.Role {
			t.Errorf("backlog submission %+v", b)
		}
		ids[b.DeliberationID] = b.TaskID
	}
	ids[run.Extraction.DeliberationID] = run.Extraction.TaskID
	ids[run.Derivation.DeliberationID] = run.Derivation.TaskID
	if len(ids) != len(roles)+2 {
		t.Fatalf("%d distinct deliberations for %d submissions: %+v", len(ids), len(roles)+2, run)
	}
	if run.Invalid.Code != "INVALID_ARGUMENT" || !strings.Contains(run.Invalid.Details, `vllm_model "gpt-unknown" is not allowed`) {
		t.Errorf("a model off the allow-list: %+v, want INVALID_ARGUMENT naming it", run.Invalid)
	}

	// The retries after a client timeout made no second deliberation.
	r := run.Retry
	if r.Second != r.Third || r.Second != run.Derivation.DeliberationID || (r.First != "" && r.First != r.Second) {
		t.Errorf("retries: %+v; want one deliberation", r)
	}
	derivations := map[string]bool{}
	for _, task := range requestedTasks(ctx, t, s) {
		if task.task.ID == run.Derivation.TaskID {
			derivations[task.deliberation] = true
		}
	}
	if len(derivations) != 1 || !derivations[run.Derivation.DeliberationID] {
		t.Errorf("deliberations requested for %s: %v; want only %s", run.Derivation.TaskID, derivations, run.Derivation.DeliberationID)
	}

	// Followed with GetDeliberationStatus to the end: the winner with a real
	// score and the metadata the old callers read.
	for id, task := range ids {
		f, ok := run.Final[id]
		if !ok || f.Status != "completed" || f.Result == nil {
			t.Errorf("%s (%s): %+v; want completed with a result", id, task, f)
			continue
		}
		res, n := f.Result, 1
		if strings.Contains(task, ":role-") {
			n = agentsPerRole
		}
		md := res.Metadata
		if res.Proposal == "" || res.AgentID == "" || md["total_agents"] != strconv.Itoa(n) ||
			md["completed_agents"] == "" || md["failed_agents"] == "" || md["average_score"] == "" || md["deliberation_id"] != id {
			t.Errorf("%s (%s): result %+v", id, task, res)
		}
		// The winner and its score are council's ranking, as stored.
		d, _, err := s.Store.Get(ctx, id)
		if err != nil || d.Result == nil || len(d.Result.Ranking) == 0 {
			t.Errorf("%s: stored state %v, %v", id, d, err)
			continue
		}
		best, sum := d.Result.Ranking[0], 0.0
		for _, rk := range d.Result.Ranking {
			sum += rk.Score
		}
		avg := strconv.FormatFloat(sum/float64(len(d.Result.Ranking)), 'f', 4, 64)
		if res.AgentID != best.Proposal.AgentID || math.Abs(res.Score-best.Score) > 1e-6 || md["average_score"] != avg ||
			md["scored"] != strconv.FormatBool(best.Scored) || (n > 1 && !best.Scored) {
			t.Errorf("%s (%s): winner %s score %v average %s scored %s; want %s %v %s %v (scored for %d agents)", id, task,
				res.AgentID, res.Score, md["average_score"], md["scored"], best.Proposal.AgentID, best.Score, avg, best.Scored, n)
		}
	}
	if run.Status.Status != "healthy" || run.Status.Completed < int64(len(ids)) || run.Status.Total < run.Status.Completed {
		t.Errorf("GetStatus %+v; want healthy with %d completed", run.Status, len(ids))
	}

	// What the old consumers read on agent.response.*.
	msgs := legacyMessages(ctx, t, s, len(roles)*agentsPerRole+2)
	consumers := legacytest.Consumers()
	read := map[string]int{}
	for _, m := range msgs {
		var env struct {
			CorrelationID string `json:"correlation_id"`
			TaskID        string `json:"task_id"`
		}
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatalf("message on %s: %v", m.Subject, err)
		}
		if ids[env.CorrelationID] != env.TaskID {
			t.Errorf("message on %s of task %s: correlation_id %s is not the deliberation id its caller got", m.Subject, env.TaskID, env.CorrelationID)
		}
		for _, c := range consumers {
			if !c.Subscribed(m.Subject) || !meantFor(c, env.TaskID) {
				continue
			}
			got, err := c.Read(m.Subject, m.Data)
			if err != nil {
				t.Errorf("%s drops or naks the message on %s of %s: %v", c.Name, m.Subject, env.TaskID, err)
				continue
			}
			read[c.Name]++
			if got.TaskID != env.TaskID {
				t.Errorf("%s read task %q, want %q", c.Name, got.TaskID, env.TaskID)
			}
		}
	}
	for name, want := range map[string]int{
		"backlog-review-processor BacklogReviewResultConsumer":  len(roles) * agentsPerRole,
		"backlog-review-processor TaskExtractionResultConsumer": 1,
		"orchestrator DeliberationResultCollector":              1,
		"orchestrator agent_response_consumer (v3 pull)":        1,
		"planning task-derivation consumer":                     1,
		"task-derivation service TaskDerivationResultConsumer":  1,
	} {
		if read[name] != want {
			t.Errorf("%s read %d messages, want %d", name, read[name], want)
		}
	}

	if n := tr.conns.Load(); n != 0 {
		t.Errorf("the vllm_url the callers sent was contacted %d time(s); it must never be", n)
	}
}

// meantFor reports whether consumer c handles messages of task id (the
// ones of other callers on its subject it leaves alone): the derivation
// consumers take derive-… tasks, the planning-ceremony processor the
// ceremonies it started (checked by the contract tests of events/legacy).
func meantFor(c legacytest.Consumer, taskID string) bool {
	switch c.Name {
	case "planning task-derivation consumer", "task-derivation service TaskDerivationResultConsumer":
		return strings.HasPrefix(taskID, "derive-")
	case "planning-ceremony-processor":
		return false
	}
	return true
}

type requested struct {
	task         council.Task
	deliberation string
}

// requestedTasks returns every deliberation.requested event on the broker
// stream, with the deliberation each starts.
func requestedTasks(ctx context.Context, t *testing.T, s *stack.Stack) []requested {
	t.Helper()
	stream, err := s.JS.Stream(ctx, s.Topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := s.Topology.EventSubject(events.TypeDeliberationRequested)
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range info.State.Subjects {
		n += int(v)
	}
	var out []requested
	for len(out) < n {
		batch, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			ev, err := events.DecodeStructured(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			task, err := events.DecodeRequest(ev)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, requested{task, council.DeliberationID(ev.Source(), ev.ID())})
		}
		if got == 0 {
			t.Fatalf("read %d of %d requests", len(out), n)
		}
	}
	return out
}
