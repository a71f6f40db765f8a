package execute_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
	"council.dev/shared/host"
)

// query GETs path from h and decodes the JSON answer into out.
func query(t *testing.T, h http.Handler, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("GET %s: %d %s: %v", path, rec.Code, rec.Body, err)
	}
	return rec.Code
}

// seed stores a deliberation that started at start and, unless status is
// running, ended after took.
func seed(t *testing.T, store council.Store, id string, backend council.Backend, status council.Status, start time.Time, took time.Duration) *council.Deliberation {
	t.Helper()
	task := counciltest.Task()
	task.Backend = backend
	d, err := council.New(id, task, start)
	if err != nil {
		t.Fatal(err)
	}
	d.Outbox = nil
	switch status {
	case council.StatusCompleted:
		d.Complete(council.Result{Winner: "agent-qa-001", Duration: took}, start.Add(took))
	case council.StatusFailed:
		d.Fail("all agents failed", start.Add(took))
	}
	if backend == council.BackendRay {
		d.Job = &council.JobRef{SubmissionID: id + "-1", Attempt: 1, State: council.JobRunning, SubmittedAt: start}
	}
	d.Outbox = nil
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	// As the outbox does when it sends the end (twice here: a retried
	// step counts nothing more).
	for range 2 {
		if err := store.CountEnd(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestQueryDeliberation(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0.Add(time.Minute)}
	f, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	seed(t, store, "dlb-running", council.BackendRay, council.StatusRunning, t0, 0)
	done := seed(t, store, "dlb-done", council.BackendFunctions, council.StatusCompleted, t0, 1500*time.Millisecond)
	seed(t, store, "dlb-failed", council.BackendFunctions, council.StatusFailed, t0, 2*time.Second)
	h := f.QueryHandler()
	ptr := func(t time.Time) *time.Time { return &t }

	for _, tc := range []struct {
		id   string
		code int
		want execute.Deliberation
	}{
		{"dlb-running", 200, execute.Deliberation{
			DeliberationID: "dlb-running", TaskID: "task-1", Kind: "deliberation", Status: "running", Backend: "ray",
			StartedAt: ptr(t0), DurationMS: 60000, Phase: "proposing",
			Job: &execute.Job{SubmissionID: "dlb-running-1", State: "RUNNING", Attempt: 1},
		}},
		{"dlb-failed", 200, execute.Deliberation{
			DeliberationID: "dlb-failed", TaskID: "task-1", Kind: "deliberation", Status: "failed", Backend: "functions",
			StartedAt: ptr(t0), FinishedAt: ptr(t0.Add(2 * time.Second)), DurationMS: 2000, Reason: "all agents failed",
			Phase: "done", Agents: []events.AgentProgress{
				{AgentID: "agent-architect-001", Role: "ARCHITECT", State: events.AgentDone},
				{AgentID: "agent-qa-001", Role: "QA", State: events.AgentDone},
				{AgentID: "agent-devops-001", Role: "DEVOPS", State: events.AgentDone},
			},
		}},
		{"dlb-unknown", 404, execute.Deliberation{DeliberationID: "dlb-unknown", Status: "not_found"}},
		{"no.such.id", 404, execute.Deliberation{DeliberationID: "no.such.id", Status: "not_found"}},
	} {
		t.Run(tc.id, func(t *testing.T) {
			var got execute.Deliberation
			if code := query(t, h, "/deliberations/"+tc.id, &got); code != tc.code {
				t.Errorf("status code %d, want %d", code, tc.code)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}

	// A completed deliberation answers the deliberation.completed data.
	var got execute.Deliberation
	if code := query(t, h, "/deliberations/dlb-done", &got); code != 200 || got.Status != "completed" || got.DurationMS != 1500 {
		t.Fatalf("completed: %d %+v", code, got)
	}
	want := events.NewCompleted("x", done, t0).Data
	var a, b any
	_ = json.Unmarshal(want, &a)
	_ = json.Unmarshal(got.Result, &b)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("result is not the deliberation.completed data (-want +got):\n%s", diff)
	}
}

func TestQueryStatsSurviveARestartAndAreNotCountedTwice(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0}
	// 20 ended deliberations taking 1 s … 20 s (odd ones failed), 2 running.
	for i := 1; i <= 20; i++ {
		status := council.StatusCompleted
		if i%2 == 1 {
			status = council.StatusFailed
		}
		seed(t, store, fmt.Sprintf("dlb-%02d", i), council.BackendFunctions, status, t0, time.Duration(i)*time.Second)
	}
	seed(t, store, "dlb-run-1", council.BackendFunctions, council.StatusRunning, t0, 0)
	seed(t, store, "dlb-run-2", council.BackendRay, council.StatusRunning, t0, 0)
	// p50 and p95 are the upper bounds of the histogram buckets of 10 s and 19 s.
	bound := func(d time.Duration) int64 {
		i, _ := slices.BinarySearch(council.TallyBounds, d)
		return council.TallyBounds[i].Milliseconds()
	}
	want := execute.Stats{Total: 22, Active: 2, Completed: 10, Failed: 10, AverageMS: 10500, P50MS: bound(10 * time.Second), P95MS: bound(19 * time.Second)}

	first, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	var st execute.ServiceStatus
	if code := query(t, first.QueryHandler(), "/status", &st); code != 200 || st.Stats == nil {
		t.Fatalf("status %d: %+v", code, st)
	}
	if diff := cmp.Diff(want, *st.Stats); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}

	// A new instance over the same state (a restart, another replica)
	// answers the same, however often it is asked.
	c.now = t0.Add(time.Hour)
	second, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var again execute.ServiceStatus
		query(t, second.QueryHandler(), "/status", &again)
		if diff := cmp.Diff(want, *again.Stats); diff != "" {
			t.Errorf("stats after a restart (-want +got):\n%s", diff)
		}
		if again.UptimeSeconds != 0 {
			t.Errorf("uptime %d s of a function started now", again.UptimeSeconds)
		}
	}
	var st2 execute.ServiceStatus
	query(t, first.QueryHandler(), "/status", &st2)
	if st2.UptimeSeconds != 3600 {
		t.Errorf("uptime of the first instance %d s, want 3600", st2.UptimeSeconds)
	}
}

func TestQueryStatusChecks(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0}
	llmDown := errors.New("llm: connection refused")
	var llmErr error
	f, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now),
		execute.WithCheck("llm", func(context.Context) error { return llmErr }),
		execute.WithCheck("ray", func(context.Context) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	var st execute.ServiceStatus
	if code := query(t, f.QueryHandler(), "/status", &st); code != 200 || st.Status != "healthy" {
		t.Fatalf("all up: %d %+v", code, st)
	}
	for _, name := range []string{"nats", "llm", "ray"} {
		if !st.Checks[name].OK {
			t.Errorf("check %s: %+v", name, st.Checks[name])
		}
	}
	if st.Stats == nil || st.Stats.Total != 0 {
		t.Errorf("stats of an empty store: %+v", st.Stats)
	}

	llmErr = llmDown
	st = execute.ServiceStatus{}
	if code := query(t, f.QueryHandler(), "/status", &st); code != 503 || st.Status != "unhealthy" {
		t.Fatalf("LLM down: %d %+v", code, st)
	}
	if got := st.Checks["llm"]; got.OK || got.Error != llmDown.Error() {
		t.Errorf("llm check %+v", got)
	}

	// The state store is checked too: when it cannot be read, no stats.
	broken := &brokenStore{Store: store}
	f2, err := execute.New(broken, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	st = execute.ServiceStatus{}
	if code := query(t, f2.QueryHandler(), "/status", &st); code != 503 || st.Checks["nats"].OK || st.Stats != nil {
		t.Errorf("store down: %d %+v", code, st)
	}
}

// brokenStore fails every read as an unreachable NATS would.
type brokenStore struct{ *counciltest.Store }

func (b *brokenStore) Get(context.Context, string) (*council.Deliberation, uint64, error) {
	return nil, 0, council.Unavailablef("nats: connection closed")
}

func (b *brokenStore) List(context.Context) ([]*council.Deliberation, error) {
	return nil, council.Unavailablef("nats: connection closed")
}

func (b *brokenStore) ByTask(context.Context, string) ([]string, error) {
	return nil, council.Unavailablef("nats: connection closed")
}

func (b *brokenStore) Active(context.Context) ([]*council.Deliberation, error) {
	return nil, council.Unavailablef("nats: connection closed")
}

func (b *brokenStore) Quarantined(context.Context) ([]council.Quarantined, error) {
	return nil, council.Unavailablef("nats: connection closed")
}

func TestQueryJobs(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0.Add(65 * time.Second)}
	f, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	seed(t, store, "dlb-b", council.BackendFunctions, council.StatusRunning, t0.Add(5*time.Second), 0)
	seed(t, store, "dlb-a", council.BackendRay, council.StatusRunning, t0, 0)
	seed(t, store, "dlb-c", council.BackendFunctions, council.StatusCompleted, t0, time.Second)

	var got []execute.ActiveJob
	if code := query(t, f.QueryHandler(), "/jobs", &got); code != 200 {
		t.Fatalf("status code %d", code)
	}
	want := []execute.ActiveJob{
		{DeliberationID: "dlb-a", TaskID: "task-1", Role: "ARCHITECT", Backend: "ray", Status: "running",
			StartedAt: t0, Runtime: "1m 5s", Job: &execute.Job{SubmissionID: "dlb-a-1", State: "RUNNING"}},
		{DeliberationID: "dlb-b", TaskID: "task-1", Role: "ARCHITECT", Backend: "functions", Status: "running",
			StartedAt: t0.Add(5 * time.Second), Runtime: "1m 0s"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}

	// No running deliberation is an empty list, not null.
	empty, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	empty.QueryHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jobs", nil))
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("no jobs: %q, want []", rec.Body)
	}
}

// TestOpenAPIDocumentsTheRoutes keeps openapi.yaml (parsed) and Routes in
// step: every route is documented with its method and every documented
// operation is served. "GET /deliberations/" is the JSON 404 of
// /deliberations/{id} for ids the pattern cannot match.
func TestOpenAPIDocumentsTheRoutes(t *testing.T) {
	api := loadOpenAPI(t)
	if v, _ := api.doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi.yaml is OpenAPI %q, want 3.1", v)
	}
	f, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	paths := api.doc["paths"].(map[string]any)
	served := map[string]bool{}
	for pattern := range f.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		if path == "/deliberations/" {
			path = "/deliberations/{id}"
		}
		served[strings.ToLower(method)+" "+path] = true
	}
	documented := map[string]bool{}
	for path, item := range paths {
		for method := range item.(map[string]any) {
			documented[method+" "+path] = true
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("openapi.yaml does not document %s", op)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("openapi.yaml documents %s, which execute does not serve", op)
		}
	}
}

// TestQueriesMountOnTheHost serves the queries next to the CloudEvents
// receiver and the health routes, as cmd/execute does.
func TestQueriesMountOnTheHost(t *testing.T) {
	f, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	var opts []host.Option
	for pattern, h := range f.Routes() {
		opts = append(opts, host.WithRoute(pattern, h))
	}
	srv, err := host.NewHTTPServer("127.0.0.1:0", f.Handle, opts...)
	if err != nil {
		t.Fatalf("routes conflict with the host's: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for path, want := range map[string]int{
		"/status": 200, "/jobs": 200, "/deliberations/dlb-x": 404, "/health/liveness": 200,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestQueryStoreDownIs503(t *testing.T) {
	f, err := execute.New(&brokenStore{Store: counciltest.NewStore()}, &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/deliberations/dlb-x", "/jobs"} {
		var body map[string]any
		if code := query(t, f.QueryHandler(), path, &body); code != 503 || body["error"] == "" {
			t.Errorf("GET %s with the store down: %d %v, want 503 and an error", path, code, body)
		}
	}
}

// TestFindByTaskNewestFirstWithProgress: GET /deliberations?task_id= lists
// the deliberations of that task only, newest first; a running one shows
// its stage, phase and each agent's calls.
func TestFindByTaskNewestFirstWithProgress(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0.Add(time.Hour)}
	seed(t, store, "dlb-old", council.BackendFunctions, council.StatusCompleted, t0, time.Second)
	other := counciltest.Task()
	other.ID = "task-other"
	if d, err := council.New("dlb-other", other, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	} else if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	// The newest: running, one proposal answered and one agent out.
	d, err := council.New("dlb-new", counciltest.Task(), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pending := d.Pending()
	if _, err := d.RecordProposal(pending[0].Key, counciltest.ProposalFor(*pending[0]), t0.Add(2*time.Minute+time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RecordFailure(pending[1].Key, pending[1].Attempt, "model refused", false, t0.Add(2*time.Minute+time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	views, err := f.FindByTask(context.Background(), counciltest.Task().ID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range views {
		ids = append(ids, v.DeliberationID)
	}
	if diff := cmp.Diff([]string{"dlb-new", "dlb-old"}, ids); diff != "" {
		t.Fatalf("deliberations of the task (-want +got):\n%s", diff)
	}
	run := views[0]
	if run.Status != "running" || run.Stage != 0 || run.Phase != "proposing" || len(run.Agents) != len(d.Task.Agents) {
		t.Fatalf("running view: %+v", run)
	}
	byID := map[string]events.AgentProgress{}
	for _, a := range run.Agents {
		byID[a.AgentID] = a
	}
	want := map[string]events.AgentProgress{
		pending[0].AgentID: {AgentID: pending[0].AgentID, State: events.AgentWaiting, Done: 1},
		pending[1].AgentID: {AgentID: pending[1].AgentID, State: events.AgentOut, Failed: 1},
		pending[2].AgentID: {AgentID: pending[2].AgentID, State: events.AgentWorking, Pending: 1},
	}
	for id, w := range want {
		got := byID[id]
		got.Role = ""
		if got != w {
			t.Errorf("agent %s: %+v, want %+v", id, got, w)
		}
	}
	if done := views[1]; len(done.Agents) != 0 && done.Agents[0].State != events.AgentDone {
		t.Errorf("completed deliberation's agents: %+v, want done", done.Agents)
	}
}
