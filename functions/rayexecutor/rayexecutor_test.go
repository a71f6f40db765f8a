package rayexecutor_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"council.dev/events"
	"council.dev/functions/rayexecutor"
	pb "council.dev/functions/rayexecutor/gen/fleet/ray_executor/v1"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
	"council.dev/shared/host"
)

// env is a façade served over a real socket on an embedded NATS.
type env struct {
	srv    *server.Server
	js     jetstream.JetStream
	store  *natsjs.Store
	client pb.RayExecutorServiceClient
	topo   natsjs.Topology
	fn     *rayexecutor.Server
}

// start runs NATS, council's topology, and the façade built by FromConfig
// (window w) on a loopback port, and connects a gRPC client to it.
func start(t *testing.T, w time.Duration, log ...*slog.Logger) *env {
	t.Helper()
	return startWith(t, w, append(log, nil)[0], &counciltest.Completer{})
}

// startWith is start with a logger and an LLM client of the test's.
func startWith(t *testing.T, w time.Duration, log *slog.Logger, llm council.Completer) *env {
	t.Helper()
	ctx := t.Context()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	// No reconnects: a stopped server is an outage at once.
	nc, err := nats.Connect(srv.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"COUNCIL_NATS_URL": srv.ClientURL(), "COUNCIL_LLM_MODEL": "council-tiny",
		"COUNCIL_LLM_MODELS": "council-tiny,Qwen/Qwen3-0.6B",
	}
	cfg, err := host.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := natsjs.Setup(ctx, js, cfg.NATS); err != nil {
		t.Fatal(err)
	}
	st, err := natsjs.OpenStore(ctx, js, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		t.Fatal(err)
	}
	fn, err := rayexecutor.FromConfig(ctx, cfg, rayexecutor.Settings{Window: w, Bucket: rayexecutor.DefaultBucket},
		rayexecutor.Deps{JS: js, Completer: llm, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, fn)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &env{srv: srv, js: js, store: st, client: pb.NewRayExecutorServiceClient(conn), topo: cfg.NATS, fn: fn}
}

// serve serves fn (nil: never ready) on a loopback port until the test ends,
// its gRPC server built with opts.
func serve(t *testing.T, fn *rayexecutor.Server, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := rayexecutor.NewHandler(nil)
	if fn != nil {
		h.Ready(rayexecutor.NewGRPCServer(fn, opts...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rayexecutor.Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func backlogRequest() *pb.ExecuteBacklogReviewDeliberationRequest {
	return &pb.ExecuteBacklogReviewDeliberationRequest{
		TaskId:          "ceremony-BRC-1:story-ST-1:role-ARCHITECT",
		TaskDescription: "[ceremony-BRC-1:story-ST-1:role-ARCHITECT] Review story ST-1 from ARCHITECT perspective",
		Role:            "ARCHITECT",
		Constraints: &pb.BacklogReviewTaskConstraints{
			StoryId: "ST-1", TimeoutSeconds: 300, MaxRetries: 3,
			Metadata: map[string]string{"ceremony_id": "BRC-1", "task_type": "BACKLOG_REVIEW_ROLE"},
		},
		Agents: []*pb.Agent{
			{Id: "agent-architect-001", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B"},
			{Id: "agent-architect-002", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B"},
			{Id: "agent-architect-003", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B", PromptTemplate: "Be brief."},
		},
		VllmUrl: "http://vllm-server-service:8000", VllmModel: "Qwen/Qwen3-0.6B",
	}
}

func derivationRequest() *pb.ExecuteDeliberationRequest {
	return &pb.ExecuteDeliberationRequest{
		TaskId: "derive-plan-42", TaskDescription: "Derive the tasks of plan 42.", Role: "SYSTEM",
		Constraints: &pb.TaskConstraints{
			StoryId: "ST-1", PlanId: "plan-42", TimeoutSeconds: 120, MaxRetries: 2,
			Metadata: map[string]string{"story_id": "ST-1", "task_type": "TASK_DERIVATION"},
		},
		Agents:  []*pb.Agent{{Id: "task-deriver-001", Role: "SYSTEM", Model: "Qwen/Qwen3-0.6B"}},
		VllmUrl: "http://vllm-server-service:8000", VllmModel: "Qwen/Qwen3-0.6B",
	}
}

// requests returns the deliberation.requested events on the broker stream.
func (e *env) requests(t *testing.T) []council.Task {
	t.Helper()
	ctx := t.Context()
	stream, err := e.js.Stream(ctx, e.topo.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(e.topo.EventSubject(events.TypeDeliberationRequested)))
	if err != nil {
		t.Fatal(err)
	}
	var out []council.Task
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil || m.Subject != e.topo.EventSubject(events.TypeDeliberationRequested) {
			continue
		}
		ev, err := events.DecodeStructured(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		task, err := events.DecodeRequest(ev)
		if err != nil {
			t.Fatalf("the published request does not decode: %v", err)
		}
		out = append(out, task)
	}
	return out
}

func TestSubmissionsBecomeRequests(t *testing.T) {
	e := start(t, time.Minute)
	ctx := t.Context()
	br, err := e.client.ExecuteBacklogReviewDeliberation(ctx, backlogRequest())
	if err != nil {
		t.Fatal(err)
	}
	dr, err := e.client.ExecuteDeliberation(ctx, derivationRequest())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*pb.ExecuteDeliberationResponse{br, dr} {
		if r.GetStatus() != rayexecutor.StatusSubmitted || !strings.HasPrefix(r.GetDeliberationId(), "dlb-") {
			t.Errorf("answer %v: want status submitted and a council deliberation id", r)
		}
	}
	if br.GetTaskId() != backlogRequest().GetTaskId() || br.GetDeliberationId() == dr.GetDeliberationId() {
		t.Errorf("answers %v, %v", br, dr)
	}
	tasks := e.requests(t)
	if len(tasks) != 2 {
		t.Fatalf("%d requests on the broker, want 2", len(tasks))
	}
	type view struct {
		ID, Kind, Model, StoryID, PlanID string
		Timeout                          time.Duration
		Retries                          int
		Metadata                         map[string]string
		Agents                           []council.Agent
	}
	viewOf := func(t council.Task) view {
		c := t.Constraints
		return view{t.ID, string(t.Kind), t.Model, c.StoryID, c.PlanID, c.Timeout, c.MaxRetries, c.Metadata, t.Agents}
	}
	want := []view{
		{
			ID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", Kind: "backlog_review", Model: "Qwen/Qwen3-0.6B", StoryID: "ST-1",
			Timeout: 300 * time.Second, Retries: 3,
			Metadata: map[string]string{"ceremony_id": "BRC-1", "task_type": "BACKLOG_REVIEW_ROLE", "story_id": "ST-1"},
			Agents: []council.Agent{
				{ID: "agent-architect-001", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B"},
				{ID: "agent-architect-002", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B"},
				{ID: "agent-architect-003", Role: "ARCHITECT", Model: "Qwen/Qwen3-0.6B", PromptTemplate: "Be brief."},
			},
		},
		{
			ID: "derive-plan-42", Kind: "task_derivation", Model: "Qwen/Qwen3-0.6B", StoryID: "ST-1", PlanID: "plan-42",
			Timeout: 120 * time.Second, Retries: 2,
			Metadata: map[string]string{"story_id": "ST-1", "task_type": "TASK_DERIVATION"},
			Agents:   []council.Agent{{ID: "task-deriver-001", Role: "SYSTEM", Model: "Qwen/Qwen3-0.6B"}},
		},
	}
	got := []view{viewOf(tasks[0]), viewOf(tasks[1])}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published requests (-want +got):\n%s", diff)
	}
	// Before execute accepts them, the status is running, not not_found.
	st, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: br.GetDeliberationId()})
	if err != nil || st.GetStatus() != rayexecutor.StatusRunning {
		t.Errorf("status of a submitted deliberation: %v, %v; want running", st, err)
	}
}

func TestKindFromTaskType(t *testing.T) {
	e := start(t, time.Minute)
	for i, tc := range []struct {
		taskType, taskID string
		agents           int
		want             council.Kind
	}{
		{"task_extraction", "ceremony-BRC-1:story-ST-1:task-extraction", 1, council.KindTaskExtraction},
		{"TASK-EXTRACTION", "x-1", 1, council.KindTaskExtraction},
		{"", "ceremony-BRC-1:story-ST-1:task-extraction", 1, council.KindTaskExtraction},
		{"backlog-review", "ceremony-BRC-1:story-ST-1:role-QA", 2, council.KindBacklogReview},
		{"Task_Derivation", "derive-plan-1", 1, council.KindTaskDerivation},
		{"", "task-9", 2, council.KindDeliberation},
	} {
		r := derivationRequest()
		r.TaskId = tc.taskID
		r.Constraints.Metadata = map[string]string{}
		if tc.taskType != "" {
			r.Constraints.Metadata["task_type"] = tc.taskType
		}
		r.Agents = nil
		for j := range tc.agents {
			r.Agents = append(r.Agents, &pb.Agent{Id: "a" + string(rune('1'+j)), Role: "DEV"})
		}
		if _, err := e.client.ExecuteDeliberation(t.Context(), r); err != nil {
			t.Fatalf("task_type %q: %v", tc.taskType, err)
		}
		tasks := e.requests(t)
		if len(tasks) != i+1 || tasks[i].Kind != tc.want {
			t.Errorf("task_type %q, task_id %q: kind %q, want %q", tc.taskType, tc.taskID, tasks[len(tasks)-1].Kind, tc.want)
		}
	}
}

func TestInvalidSubmissions(t *testing.T) {
	e := start(t, time.Minute)
	for _, tc := range []struct {
		name string
		edit func(r *pb.ExecuteDeliberationRequest)
		want string
	}{
		{"no task id", func(r *pb.ExecuteDeliberationRequest) { r.TaskId = " " }, "task_id is required"},
		{"no story", func(r *pb.ExecuteDeliberationRequest) { r.Constraints.StoryId = "" }, "constraints.story_id is required"},
		{"model not allowed", func(r *pb.ExecuteDeliberationRequest) { r.VllmModel = "gpt-9" }, `vllm_model "gpt-9" is not allowed`},
		{"agent model not allowed", func(r *pb.ExecuteDeliberationRequest) { r.Agents[0].Model = "gpt-9" }, `agents[0].model "gpt-9" is not allowed`},
		{"unknown task type", func(r *pb.ExecuteDeliberationRequest) { r.Constraints.Metadata["task_type"] = "PLANNING" }, `task_type "PLANNING" is unknown`},
		{"no agents", func(r *pb.ExecuteDeliberationRequest) { r.Agents = nil }, "at least one agent is required"},
		{"two agents for a derivation", func(r *pb.ExecuteDeliberationRequest) {
			r.Agents = append(r.Agents, &pb.Agent{Id: "b", Role: "DEV"})
		}, "exactly one agent is required"},
		{"bad agent id", func(r *pb.ExecuteDeliberationRequest) { r.Agents[0].Id = "a b" }, `agents[0].id "a b"`},
		{"negative timeout", func(r *pb.ExecuteDeliberationRequest) { r.Constraints.TimeoutSeconds = -1 }, "timeout_seconds must not be negative"},
		{"no plan for a deliberation", func(r *pb.ExecuteDeliberationRequest) {
			r.Constraints.PlanId = ""
			r.Constraints.Metadata["task_type"] = "DELIBERATION"
		}, "plan_id is required"},
		{"no constraints", func(r *pb.ExecuteDeliberationRequest) { r.Constraints = nil }, "constraints.story_id is required"},
	} {
		r := derivationRequest()
		tc.edit(r)
		_, err := e.client.ExecuteDeliberation(t.Context(), r)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s: %v; want InvalidArgument naming %q", tc.name, err, tc.want)
		}
	}
	b := backlogRequest()
	b.TaskId = "review-ST-1"
	_, err := e.client.ExecuteBacklogReviewDeliberation(t.Context(), b)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "ceremony-{id}:story-{id}:role-{ROLE}") {
		t.Errorf("backlog review with task id %q: %v; want InvalidArgument naming the form", b.TaskId, err)
	}
	if n := len(e.requests(t)); n != 0 {
		t.Errorf("%d requests published for invalid submissions", n)
	}
	_, err = e.client.GetDeliberationStatus(t.Context(), &pb.GetDeliberationStatusRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("status without an id: %v, want InvalidArgument", err)
	}
}

// TestRetries: a retry within the window (same request, or the same
// idempotency key) is the same deliberation and publishes nothing new; a
// re-run after the window is a new deliberation.
func TestRetries(t *testing.T) {
	const window = 2 * time.Second
	e := start(t, window)
	ctx := t.Context()
	first, err := e.client.ExecuteDeliberation(ctx, derivationRequest())
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.ExecuteDeliberation(ctx, derivationRequest())
	if err != nil {
		t.Fatal(err)
	}
	if again.GetDeliberationId() != first.GetDeliberationId() {
		t.Errorf("retry: deliberation %s, want %s", again.GetDeliberationId(), first.GetDeliberationId())
	}
	// With a key, a changed request (another vllm_url) is still the same.
	keyed := metadata.AppendToOutgoingContext(ctx, rayexecutor.IdempotencyKeyHeader, "derive-plan-42#1")
	k1, err := e.client.ExecuteDeliberation(keyed, derivationRequest())
	if err != nil {
		t.Fatal(err)
	}
	r := derivationRequest()
	r.VllmUrl = "http://elsewhere:8000"
	k2, err := e.client.ExecuteDeliberation(keyed, r)
	if err != nil {
		t.Fatal(err)
	}
	if k1.GetDeliberationId() != k2.GetDeliberationId() || k1.GetDeliberationId() == first.GetDeliberationId() {
		t.Errorf("keyed: %s then %s (unkeyed %s); want one new deliberation", k1.GetDeliberationId(), k2.GetDeliberationId(), first.GetDeliberationId())
	}
	if n := len(e.requests(t)); n != 2 {
		t.Errorf("%d requests on the broker, want 2 (retries are dropped as duplicates)", n)
	}

	// After the window the submission is forgotten: wait until it is.
	kv, err := e.js.KeyValue(ctx, rayexecutor.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	var (
		n      int
		status string
	)
	forgotten := counciltest.Within(30*time.Second, 100*time.Millisecond, func() bool {
		st, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: first.GetDeliberationId()})
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for range keys.Keys() {
			n++
		}
		status = st.GetStatus()
		return n == 0 && status == rayexecutor.StatusNotFound
	})
	if !forgotten {
		t.Fatalf("submissions still remembered %s after the %s window (%d keys, status %s)", 30*time.Second, window, n, status)
	}
	rerun, err := e.client.ExecuteDeliberation(ctx, derivationRequest())
	if err != nil {
		t.Fatal(err)
	}
	if rerun.GetDeliberationId() == first.GetDeliberationId() {
		t.Errorf("a re-run after the window is deliberation %s again", rerun.GetDeliberationId())
	}
	if n := len(e.requests(t)); n != 3 {
		t.Errorf("%d requests on the broker, want 3", n)
	}
}

func TestQueries(t *testing.T) {
	e := start(t, time.Minute)
	ctx := t.Context()
	now := time.Now()
	task := counciltest.Task()
	d, err := council.New("dlb-0123456789abcdef01234567", task, now.Add(-65*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	st, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: d.ID})
	if err != nil || st.GetStatus() != rayexecutor.StatusRunning {
		t.Errorf("status: %v, %v; want running", st, err)
	}
	nf, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: "dlb-nope"})
	if err != nil || nf.GetStatus() != rayexecutor.StatusNotFound || !strings.Contains(nf.GetErrorMessage(), "dlb-nope") {
		t.Errorf("unknown id: %v, %v; want not_found naming it", nf, err)
	}
	jobs, err := e.client.GetActiveJobs(ctx, &pb.GetActiveJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.GetJobs()) != 1 {
		t.Fatalf("jobs %v, want the running deliberation", jobs)
	}
	j := jobs.GetJobs()[0]
	if j.GetJobId() != d.ID || j.GetTaskId() != task.ID || j.GetRole() != task.Role || j.GetStatus() != rayexecutor.JobRunning ||
		!strings.HasPrefix(j.GetRuntime(), "1m ") || j.GetStartTime().AsTime().Unix() != d.StartedAt.Unix() {
		t.Errorf("job %v", j)
	}
	s, err := e.client.GetStatus(ctx, &pb.GetStatusRequest{IncludeStats: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetStatus() != rayexecutor.StatusHealthy || s.GetStats().GetActiveDeliberations() != 1 || s.GetStats().GetTotalDeliberations() != 1 {
		t.Errorf("status %v, want healthy with 1 active of 1", s)
	}

	// A cancelled deliberation is, for the old API, a failure that says so.
	c, err := council.New("dlb-0123456789abcdef01234568", task, now)
	if err != nil {
		t.Fatal(err)
	}
	c.Cancel("the story was dropped", now)
	if _, err := e.store.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	cs, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: c.ID})
	if err != nil || cs.GetStatus() != rayexecutor.StatusFailed || cs.GetErrorMessage() != "cancelled: the story was dropped" {
		t.Errorf("cancelled: %v, %v; want failed, cancelled: the story was dropped", cs, err)
	}

	// NATS down: every query is UNAVAILABLE (retried by clients), never OK.
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	for name, call := range map[string]func() error{
		"GetStatus": func() error { _, err := e.client.GetStatus(ctx, &pb.GetStatusRequest{}); return err },
		"GetDeliberationStatus": func() error {
			_, err := e.client.GetDeliberationStatus(ctx, &pb.GetDeliberationStatusRequest{DeliberationId: d.ID})
			return err
		},
		"GetActiveJobs":       func() error { _, err := e.client.GetActiveJobs(ctx, &pb.GetActiveJobsRequest{}); return err },
		"ExecuteDeliberation": func() error { _, err := e.client.ExecuteDeliberation(ctx, derivationRequest()); return err },
	} {
		if err := call(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s with NATS down: %v, want Unavailable", name, err)
		}
	}
}

// downLLM is an LLM server that does not answer its health check.
type downLLM struct{ counciltest.Completer }

func (*downLLM) Ping(context.Context) error { return errors.New("connection refused") }

// TestStatusUnhealthyWithoutLLM: GetStatus is healthy only when the LLM
// server answers too; the statistics are still read.
func TestStatusUnhealthyWithoutLLM(t *testing.T) {
	e := startWith(t, time.Minute, nil, &downLLM{})
	s, err := e.client.GetStatus(t.Context(), &pb.GetStatusRequest{})
	if err != nil || s.GetStatus() != rayexecutor.StatusUnhealthy || s.GetStats() == nil {
		t.Errorf("status %v, %v; want unhealthy with stats", s, err)
	}
}

// TestNotReady: the port listens before the dependencies answer; calls
// answer UNAVAILABLE until then.
func TestNotReady(t *testing.T) {
	addr := serve(t, nil)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_, err = pb.NewRayExecutorServiceClient(conn).GetStatus(t.Context(), &pb.GetStatusRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "starting") {
		t.Errorf("GetStatus before ready: %v, want Unavailable (starting)", err)
	}
}

// TestVLLMURLLoggedOnce: the vllm_url every old caller sends is accepted,
// never used (TestRayExecutorPythonClient proves nobody connects to it),
// and said once in the log, not per request.
func TestVLLMURLLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	e := start(t, time.Minute, slog.New(slog.NewJSONHandler(&syncWriter{w: &buf}, nil)))
	for range 3 {
		if _, err := e.client.ExecuteBacklogReviewDeliberation(t.Context(), backlogRequest()); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "vllm_url of requests is ignored"); n != 1 {
		t.Errorf("vllm_url logged %d times, want once:\n%s", n, buf.String())
	}
}

// syncWriter serialises writes (the gRPC server logs from its goroutines).
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestLoadSettings(t *testing.T) {
	s, err := rayexecutor.LoadSettings(func(string) string { return "" })
	if err != nil || s.Window != rayexecutor.DefaultWindow || s.Bucket != rayexecutor.DefaultBucket {
		t.Errorf("defaults: %+v, %v", s, err)
	}
	s, err = rayexecutor.LoadSettings(func(k string) string {
		return map[string]string{"COUNCIL_RAYEXECUTOR_WINDOW": "30s", "COUNCIL_RAYEXECUTOR_BUCKET": "b"}[k]
	})
	if err != nil || s.Window != 30*time.Second || s.Bucket != "b" {
		t.Errorf("set: %+v, %v", s, err)
	}
	_, err = rayexecutor.LoadSettings(func(k string) string { return map[string]string{"COUNCIL_RAYEXECUTOR_WINDOW": "-1s"}[k] })
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "COUNCIL_RAYEXECUTOR_WINDOW") {
		t.Errorf("bad window: %v", err)
	}
}

// TestQueryTokenRequired: with COUNCIL_QUERY_TOKEN set, every call needs
// "authorization: Bearer <token>"; without it or with another, the call
// fails Unauthenticated, which clients do not retry.
func TestQueryTokenRequired(t *testing.T) {
	e := start(t, time.Minute)
	addr := serve(t, e.fn, rayexecutor.RequireToken("rx-query-token")...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := pb.NewRayExecutorServiceClient(conn)
	for _, tt := range []struct {
		auth string
		want codes.Code
	}{{"", codes.Unauthenticated}, {"Bearer wrong", codes.Unauthenticated}, {"rx-query-token", codes.Unauthenticated}, {"Bearer rx-query-token", codes.OK}} {
		ctx := t.Context()
		if tt.auth != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.auth)
		}
		_, err := client.GetActiveJobs(ctx, &pb.GetActiveJobsRequest{})
		if status.Code(err) != tt.want {
			t.Errorf("GetActiveJobs with authorization %q: %v, want %v", tt.auth, err, tt.want)
		}
	}
	if opts := rayexecutor.RequireToken(""); opts != nil {
		t.Errorf("RequireToken(\"\") = %v, want no options (open)", opts)
	}
}
