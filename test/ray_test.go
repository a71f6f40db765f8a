package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/rayjobs/raytest"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// buildAgent builds council-agent into a new directory, the working
// directory of the Ray jobs (the rayjobs adapter zips and uploads it).
func buildAgent(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "council-agent"),
		"council.dev/functions/execute/cmd/council-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build council-agent: %v\n%s", err, out)
	}
	t.Logf("built council-agent in %s", time.Since(start).Round(time.Millisecond))
	return dir
}

// startRayStack starts the stack with the Ray backend: a real Ray head
// (COUNCIL_RAY_ADDRESS) and the real LLM server.
func startRayStack(t *testing.T) *stack.Stack {
	t.Helper()
	addr := raytest.Address(t)
	llm := vllmtest.URL(t)
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: llm, LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second,
		RayAddress: addr, AgentDir: buildAgent(t),
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// onBackend returns e with its backend set.
func onBackend(t *testing.T, e event.Event, backend string) event.Event {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["backend"] = backend
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	e.SetID(e.ID() + "-" + backend)
	return e
}

// awaitEvent waits for the outcome of deliberation id and returns its event.
func awaitEvent(t *testing.T, s *stack.Stack, id string) event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatalf("await deliberation %s: %v (stack: %v)", id, err, s.Err())
	}
	if out.Failed != nil {
		t.Fatalf("deliberation %s failed: %s", id, out.Failed.Reason)
	}
	return out.Event
}

func get(t *testing.T, h http.Handler, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("GET %s: %d %s: %v", path, rec.Code, rec.Body, err)
	}
	return rec.Code
}

// eventually checks cond every 200ms until it holds; it fails t when d
// passes first.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !counciltest.Within(d, 200*time.Millisecond, cond) {
		t.Fatalf("%s: not within %s", what, d)
	}
}

func TestRayBackendEndToEnd(t *testing.T) {
	s := startRayStack(t)
	e := onBackend(t, request(t, 48), "ray")
	start := time.Now()
	id := send(t, s, e)
	ev := awaitEvent(t, s, id)
	wall := time.Since(start)
	c, err := events.DecodeCompleted(ev)
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, &c, "task-42")
	if c.Backend != "ray" || ev.ID() != id+".completed" {
		t.Errorf("completed event %s with backend %s; want %s.completed, ray", ev.ID(), c.Backend, id)
	}

	// The job ran on Ray, once, and the sweep records that it succeeded.
	sid := execute.SubmissionID(id, 1)
	var info council.JobInfo
	eventually(t, time.Minute, "job "+sid+" SUCCEEDED", func() bool {
		info, err = s.Ray.Get(context.Background(), sid)
		return err == nil && info.State == council.JobSucceeded
	})
	// Once its outcome and the end of its logs are recorded, the job is
	// deleted from Ray (JobDeleteAfter after it ended), never submitted
	// twice.
	var d *council.Deliberation
	eventually(t, time.Minute, "job "+sid+" deleted from Ray with its logs recorded", func() bool {
		d, _, err = s.Store.Get(context.Background(), id)
		return err == nil && d.Job != nil && d.Job.Deleted
	})
	if !strings.Contains(d.Job.LogTail, "council-agent: deliberation "+id+" completed: winner ") {
		t.Errorf("the recorded end of the job's logs does not report the outcome:\n%s", d.Job.LogTail)
	}
	if _, err := s.Ray.Get(context.Background(), sid); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("job %s after its deletion: %v, want not found", sid, err)
	}
	jobs, err := s.Ray.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if strings.HasPrefix(j.SubmissionID, id) {
			t.Errorf("Ray still lists job %s (%s) of deliberation %s", j.SubmissionID, j.State, id)
		}
	}
	ms := func(a, b time.Time) time.Duration { return b.Sub(a).Round(time.Millisecond) }
	t.Logf("ray backend, 3 agents, 1 round: completed event %s after sending (deliberation %s, %d tokens); "+
		"accepted→submitted %s, submitted→job SUCCEEDED %s (Ray start→end %s), job end→completed recorded %s",
		wall.Round(time.Millisecond), ms(d.StartedAt, d.FinishedAt), c.Usage.TotalTokens,
		ms(d.StartedAt, d.Job.SubmittedAt), ms(d.Job.SubmittedAt, info.EndTime), ms(info.StartTime, info.EndTime),
		ms(info.EndTime, d.FinishedAt))

	h := s.Execute().QueryHandler()
	var q execute.Deliberation
	eventually(t, 30*time.Second, "GET /deliberations shows the job SUCCEEDED", func() bool {
		q = execute.Deliberation{}
		return get(t, h, "/deliberations/"+id, &q) == 200 && q.Job != nil && q.Job.State == "SUCCEEDED"
	})
	if q.Status != "completed" || q.Backend != "ray" || q.Job.SubmissionID != sid || q.Job.Attempt != 1 {
		t.Errorf("GET /deliberations/%s = %+v", id, q)
	}
	var fromQuery, fromEvent events.Completed
	if err := json.Unmarshal(q.Result, &fromQuery); err != nil {
		t.Fatalf("result: %v", err)
	}
	_ = json.Unmarshal(ev.Data(), &fromEvent)
	if diff := cmp.Diff(fromEvent, fromQuery); diff != "" {
		t.Errorf("the query's result is not the completed event's data (-event +query):\n%s", diff)
	}

	time.Sleep(2 * time.Second) // let a duplicate, if any, land
	counts := countEvents(t, s, id)
	if counts[events.TypeDeliberationCompleted] != 1 || counts[events.TypeProposalRequested] != 0 {
		t.Errorf("events of the deliberation: %v; want 1 completed and no fan-out (the job does the work)", counts)
	}
}

// keySets maps every JSON path of v ("ranking[].proposal") to the keys of
// the object there; lens maps every array path to its longest length.
func keySets(v any, path string, keys map[string][]string, lens map[string]int) {
	switch x := v.(type) {
	case map[string]any:
		ks := keys[path]
		for k, child := range x {
			ks = append(ks, k)
			keySets(child, path+"."+k, keys, lens)
		}
		slices.Sort(ks)
		keys[path] = slices.Compact(ks)
	case []any:
		lens[path] = max(lens[path], len(x))
		for _, child := range x {
			keySets(child, path+"[]", keys, lens)
		}
	}
}

// underEmptyArray reports whether path lies under an array that is empty
// (or absent) in lens.
func underEmptyArray(path string, lens map[string]int) bool {
	for i := 0; ; {
		j := strings.Index(path[i:], "[]")
		if j < 0 {
			return false
		}
		if lens[path[:i+j]] == 0 {
			return true
		}
		i += j + 2
	}
}

func TestBackendsGiveTheSameShape(t *testing.T) {
	s := startRayStack(t)
	base := request(t, 32)
	type run struct {
		backend string
		event   event.Event
		wall    time.Duration
		err     error
	}
	runs := []*run{{backend: "functions"}, {backend: "ray"}}
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for _, r := range runs {
		e := onBackend(t, base.Clone(), r.backend)
		start := time.Now()
		id := send(t, s, e)
		wg.Go(func() {
			out, err := s.Await(ctx, id)
			r.event, r.wall, r.err = out.Event, time.Since(start), err
			if err == nil && out.Failed != nil {
				r.err = fmt.Errorf("failed: %s", out.Failed.Reason)
			}
		})
	}
	wg.Wait()
	for _, r := range runs {
		if r.err != nil {
			t.Fatalf("%s backend: %v (stack: %v)", r.backend, r.err, s.Err())
		}
	}
	shape := func(r *run) (map[string][]string, map[string]int) {
		var v any
		if err := json.Unmarshal(r.event.Data(), &v); err != nil {
			t.Fatal(err)
		}
		keys, lens := map[string][]string{}, map[string]int{}
		keySets(v, "", keys, lens)
		c, _ := events.DecodeCompleted(r.event)
		t.Logf("%s backend: completed event after %s, duration_ms %d, %d tokens",
			r.backend, r.wall.Round(time.Millisecond), c.DurationMS, c.Usage.TotalTokens)
		return keys, lens
	}
	fk, fl := shape(runs[0])
	rk, rl := shape(runs[1])
	paths := map[string]bool{}
	for p := range fk {
		paths[p] = true
	}
	for p := range rk {
		paths[p] = true
	}
	for p := range paths {
		f, fok := fk[p]
		r, rok := rk[p]
		switch {
		case fok && rok:
			// Maps keyed by data (scores by criterion, metadata) hold the
			// same keys too: same rubric, same request.
			if diff := cmp.Diff(f, r); diff != "" {
				t.Errorf("keys at %q differ (-functions +ray):\n%s", p, diff)
			}
		case !fok && underEmptyArray(p, fl), !rok && underEmptyArray(p, rl):
			// e.g. failures[] when one run had a failed agent and the other none.
		default:
			t.Errorf("path %q only on the %s backend", p, map[bool]string{true: "functions", false: "ray"}[fok])
		}
	}
	for _, r := range runs {
		c, err := events.DecodeCompleted(r.event)
		if err != nil {
			t.Fatal(err)
		}
		checkCompleted(t, &c, "task-42")
	}
}

// TestRestartKeepsStatusStatsAndJobs restarts the execute function while
// a Ray job and a functions deliberation run: the new instance lists them,
// follows them to the end, and its statistics come from the stored state.
func TestRestartKeepsStatusStatsAndJobs(t *testing.T) {
	s := startRayStack(t)
	base := request(t, 48)
	ids := map[string]string{}
	for _, backend := range []string{"ray", "functions"} {
		ids[backend] = send(t, s, onBackend(t, base.Clone(), backend))
	}
	first := s.Execute()
	eventually(t, time.Minute, "both deliberations listed as running, the Ray job submitted", func() bool {
		jobs, err := first.ActiveJobs(context.Background())
		if err != nil || len(jobs) != 2 {
			return false
		}
		for _, j := range jobs {
			if j.Backend == "ray" && j.Job == nil {
				return false
			}
		}
		return true
	})

	second, err := s.RestartExecute()
	if err != nil {
		t.Fatal(err)
	}
	var jobs []execute.ActiveJob
	if code := get(t, second.QueryHandler(), "/jobs", &jobs); code != 200 {
		t.Fatalf("GET /jobs after the restart: %d", code)
	}
	listed := map[string]execute.ActiveJob{}
	for _, j := range jobs {
		listed[j.DeliberationID] = j
	}
	// A deliberation may have ended between the two reads; one still
	// listed must be as stored.
	if j, ok := listed[ids["ray"]]; ok && (j.Job == nil || j.Job.SubmissionID != execute.SubmissionID(ids["ray"], 1) || j.Runtime == "") {
		t.Errorf("ray deliberation after the restart: %+v", j)
	}
	for backend, id := range ids {
		var q execute.Deliberation
		if code := get(t, second.QueryHandler(), "/deliberations/"+id, &q); code != 200 || q.Backend != backend {
			t.Errorf("GET /deliberations/%s after the restart: %d %+v", id, code, q)
		}
		t.Logf("right after the restart, the %s deliberation is %s (%d ms in)", backend, q.Status, q.DurationMS)
	}

	for _, id := range ids {
		awaitEvent(t, s, id)
	}
	// The end is counted right after its event is sent: wait for both.
	eventually(t, 30*time.Second, "both ends counted", func() bool {
		var st execute.ServiceStatus
		return get(t, second.QueryHandler(), "/status", &st) == 200 && st.Stats != nil && st.Stats.Completed == 2
	})
	// A third instance over the same state, and the restarted one, agree;
	// asking again counts nothing twice.
	third, err := execute.New(s.Store, s.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	var want *execute.Stats
	for i, q := range []struct {
		h      http.Handler
		checks []string
	}{
		{second.QueryHandler(), []string{"nats", "llm", "ray"}},
		{third.QueryHandler(), []string{"nats"}}, // built bare: no LLM, no Ray
		{second.QueryHandler(), []string{"nats", "llm", "ray"}},
	} {
		var st execute.ServiceStatus
		code := get(t, q.h, "/status", &st)
		if code != 200 || st.Status != "healthy" {
			t.Errorf("GET /status #%d: %d %+v", i+1, code, st)
		}
		var names []string
		for name, c := range st.Checks {
			names = append(names, name)
			if !c.OK {
				t.Errorf("check %s: %+v", name, c)
			}
		}
		slices.Sort(names)
		slices.Sort(q.checks)
		if !slices.Equal(names, q.checks) {
			t.Errorf("GET /status #%d checks %v, want %v", i+1, names, q.checks)
		}
		if st.Stats == nil {
			t.Fatal("no stats")
		}
		if want == nil {
			want = st.Stats
			t.Logf("stats after the restart: %+v", *st.Stats)
			if st.Stats.Total != 2 || st.Stats.Completed != 2 || st.Stats.Active != 0 || st.Stats.Failed != 0 ||
				st.Stats.AverageMS <= 0 || st.Stats.P50MS <= 0 || st.Stats.P95MS < st.Stats.P50MS {
				t.Errorf("stats %+v; want 2 completed with execution times", *st.Stats)
			}
			continue
		}
		if diff := cmp.Diff(*want, *st.Stats); diff != "" {
			t.Errorf("stats #%d (-first +this):\n%s", i+1, diff)
		}
	}
	var none []execute.ActiveJob
	if get(t, third.QueryHandler(), "/jobs", &none); len(none) != 0 {
		t.Errorf("active jobs after both ended: %+v", none)
	}
}
