package rayexecutor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"council.dev/events"
	pb "council.dev/functions/rayexecutor/gen/fleet/ray_executor/v1"
	"council.dev/shared/council"
)

// IdempotencyKeyHeader is the gRPC metadata key of a client's idempotency
// key. Without it, the key is a digest of the request (RPC and every field).
const IdempotencyKeyHeader = "idempotency-key"

// Statuses the old service answered, and still does.
const (
	StatusSubmitted = "submitted"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusNotFound  = "not_found"
	StatusHealthy   = "healthy"
	StatusUnhealthy = "unhealthy"
	// JobRunning is the status of every GetActiveJobs entry.
	JobRunning = "RUNNING"
)

// store is the durable deliberation state the queries read (natsjs.Store).
type store interface {
	Get(ctx context.Context, id string) (*council.Deliberation, uint64, error)
	Active(ctx context.Context) ([]*council.Deliberation, error)
	Tally(ctx context.Context) (council.Tally, error)
}

// Server serves fleet.ray_executor.v1.RayExecutorService: submissions are
// published as deliberation.requested.v1 events, queries read the state.
type Server struct {
	pb.UnimplementedRayExecutorServiceServer

	store     store
	emitter   council.Emitter
	subs      *Submissions
	source    string
	model     string
	allowed   []string
	maxTokens int
	checks    []check
	now       func() time.Time
	started   time.Time
	log       *slog.Logger

	vllmURLOnce sync.Once
}

var _ pb.RayExecutorServiceServer = (*Server)(nil)

type check struct {
	name  string
	probe func(ctx context.Context) error
}

// Option configures a Server.
type Option func(*Server) error

// WithSource sets the CloudEvents source of the requests (default
// council.dev/rayexecutor). With the event id it derives the deliberation id.
func WithSource(source string) Option {
	return func(s *Server) error {
		if source == "" {
			return errors.New("empty source")
		}
		s.source = source
		return nil
	}
}

// WithModels sets the default model and the models a request or agent may
// name (COUNCIL_LLM_MODEL, COUNCIL_LLM_MODELS); default council-tiny alone.
func WithModels(defaultModel string, allowed ...string) Option {
	return func(s *Server) error {
		if defaultModel == "" {
			return errors.New("empty default model")
		}
		s.model = defaultModel
		s.allowed = append([]string{defaultModel}, slices.DeleteFunc(slices.Clone(allowed), func(m string) bool { return m == defaultModel })...)
		return nil
	}
}

// StructuredMaxTokens caps the one completion of a task extraction or task
// derivation: the old executor's max_tokens, room for a whole structured
// answer (its schema bounds it).
const StructuredMaxTokens = 2048

// WithMaxTokens caps each completion of the deliberations and backlog
// reviews submitted (the old API has no such field); 0 keeps council's
// default. Task extractions and derivations get StructuredMaxTokens.
func WithMaxTokens(n int) Option {
	return func(s *Server) error {
		if n < 0 || n > council.MaxTokensLimit {
			return fmt.Errorf("max tokens %d: want 0 to %d", n, council.MaxTokensLimit)
		}
		s.maxTokens = n
		return nil
	}
}

// WithCheck adds a dependency GetStatus checks under name (the state store
// is always checked, as "nats"). A nil probe is ignored.
func WithCheck(name string, probe func(ctx context.Context) error) Option {
	return func(s *Server) error {
		if name == "" {
			return errors.New("check with an empty name")
		}
		if probe != nil {
			s.checks = append(s.checks, check{name: name, probe: probe})
		}
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) error {
		if l == nil {
			return errors.New("nil logger")
		}
		s.log = l
		return nil
	}
}

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Server) error {
		if now == nil {
			return errors.New("nil clock")
		}
		s.now = now
		return nil
	}
}

// New returns a Server that reads st, publishes through em and remembers
// submissions in subs.
func New(st store, em council.Emitter, subs *Submissions, opts ...Option) (*Server, error) {
	if st == nil || em == nil || subs == nil {
		return nil, errors.New("rayexecutor: new: a store, an emitter and the submissions are required")
	}
	s := &Server{
		store: st, emitter: em, subs: subs, source: "council.dev/rayexecutor",
		model: "council-tiny", allowed: []string{"council-tiny"}, now: time.Now, log: slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(s); err != nil {
			return nil, fmt.Errorf("rayexecutor: option: %w", err)
		}
	}
	s.started = s.now()
	return s, nil
}

// Register registers s on g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterRayExecutorServiceServer(g, s) }

// ExecuteDeliberation submits a deliberation, a task extraction or a task
// derivation (kind from metadata task_type).
func (s *Server) ExecuteDeliberation(ctx context.Context, r *pb.ExecuteDeliberationRequest) (*pb.ExecuteDeliberationResponse, error) {
	return s.submit(ctx, fromExecute(r), r)
}

// ExecuteBacklogReviewDeliberation submits a backlog review of one story by
// one role.
func (s *Server) ExecuteBacklogReviewDeliberation(ctx context.Context, r *pb.ExecuteBacklogReviewDeliberationRequest) (*pb.ExecuteDeliberationResponse, error) {
	return s.submit(ctx, fromBacklogReview(r), r)
}

func (s *Server) submit(ctx context.Context, sub submission, msg proto.Message) (*pb.ExecuteDeliberationResponse, error) {
	start := time.Now()
	if sub.vllmURL != "" {
		s.vllmURLOnce.Do(func() {
			s.log.Info("vllm_url of requests is ignored: the LLM server is COUNCIL_LLM_URL (logged once)", "vllm_url", sub.vllmURL)
		})
	}
	task, err := sub.task(s.model, s.allowed)
	if err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	task.Constraints.MaxTokens = s.maxTokens
	if task.Kind.SinglePass() {
		task.Constraints.MaxTokens = StructuredMaxTokens
	}
	if err := task.WithDefaults().Validate(); err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	key, err := idempotencyKey(ctx, sub.rpc, msg)
	if err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	now := s.now()
	eventID, err := newEventID()
	if err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	env := events.NewRequest(s.source, eventID, task, now)
	// The check execute makes when it receives the event: a request it
	// would refuse is refused here, with its message.
	if _, err := events.DecodeRequest(events.ToEvent(env)); err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	rec, created, err := s.subs.claim(ctx, key, record{
		EventID: eventID, DeliberationID: council.DeliberationID(s.source, eventID), TaskID: task.ID, SubmittedAt: now,
	})
	if err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	if !created {
		// A retry: the same event again (dropped by the broker, or taken
		// by execute as the same deliberation), in case the first publish
		// was lost.
		env = events.NewRequest(s.source, rec.EventID, task, now)
	}
	if err := s.emitter.Emit(ctx, env); err != nil {
		return nil, s.fail(ctx, sub, err, start)
	}
	msgText := "Deliberation submitted to council"
	if !created {
		msgText = "Deliberation already submitted (a retry within " + s.subs.Window().String() + "): the same deliberation"
	}
	s.log.InfoContext(ctx, "submission", "rpc", sub.rpc, "task_id", task.ID, "kind", task.Kind,
		"deliberation", rec.DeliberationID, "event", rec.EventID, "retry", !created, "outcome", "submitted",
		"duration_ms", time.Since(start).Milliseconds())
	return &pb.ExecuteDeliberationResponse{
		TaskId: sub.taskID, DeliberationId: rec.DeliberationID, Status: StatusSubmitted, Message: msgText,
	}, nil
}

// fail logs a refused submission and returns its gRPC status.
func (s *Server) fail(ctx context.Context, sub submission, err error, start time.Time) error {
	st := statusOf(err)
	s.log.InfoContext(ctx, "submission", "rpc", sub.rpc, "task_id", sub.taskID, "outcome", st.Code().String(),
		"error", err, "duration_ms", time.Since(start).Milliseconds())
	return st.Err()
}

// statusOf maps err to a gRPC status: invalid (and too large) →
// InvalidArgument with the message; unavailable → Unavailable, which
// clients retry; anything else Internal.
func statusOf(err error) *status.Status {
	switch {
	case errors.Is(err, council.ErrInvalid), errors.Is(err, council.ErrTooLarge), errors.Is(err, council.ErrConflict):
		return status.New(codes.InvalidArgument, err.Error())
	case errors.Is(err, council.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	default:
		return status.New(codes.Internal, err.Error())
	}
}

// idempotencyKey is the client's idempotency-key metadata, else a digest
// of the RPC and the request (deterministic encoding).
func idempotencyKey(ctx context.Context, rpc string, msg proto.Message) (string, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(IdempotencyKeyHeader); len(v) > 0 && v[0] != "" {
			if len(v[0]) > 512 {
				return "", council.Invalidf("metadata %s is longer than 512 bytes", IdempotencyKeyHeader)
			}
			return "key\x00" + rpc + "\x00" + v[0], nil
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return "", council.Invalidf("encode the request: %v", err)
	}
	sum := sha256.Sum256(b)
	return "digest\x00" + rpc + "\x00" + hex.EncodeToString(sum[:]), nil
}

// newEventID returns a fresh event id: each new submission (outside the
// window) is a new deliberation.
func newEventID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("rayexecutor: event id: %w", err)
	}
	return "rayexec-" + hex.EncodeToString(b[:]), nil
}

// GetDeliberationStatus answers running, completed (with the winner),
// failed (with the reason) or not_found.
func (s *Server) GetDeliberationStatus(ctx context.Context, r *pb.GetDeliberationStatusRequest) (*pb.GetDeliberationStatusResponse, error) {
	id := r.GetDeliberationId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "deliberation_id is required")
	}
	d, _, err := s.store.Get(ctx, id)
	switch {
	case errors.Is(err, council.ErrNotFound), errors.Is(err, council.ErrInvalid):
		ok, serr := s.subs.submitted(ctx, id)
		if serr != nil {
			return nil, statusOf(serr).Err()
		}
		if ok {
			// Submitted, not yet accepted by execute.
			return &pb.GetDeliberationStatusResponse{Status: StatusRunning}, nil
		}
		return &pb.GetDeliberationStatusResponse{Status: StatusNotFound, ErrorMessage: "Deliberation " + id + " not found"}, nil
	case err != nil:
		return nil, statusOf(err).Err()
	}
	switch d.Status {
	case council.StatusCompleted:
		return &pb.GetDeliberationStatusResponse{Status: StatusCompleted, Result: resultOf(d)}, nil
	case council.StatusFailed, council.StatusCancelled:
		// The old API has no cancel: a cancelled deliberation is a
		// failure whose message says so ("cancelled: …").
		return &pb.GetDeliberationStatusResponse{Status: StatusFailed, ErrorMessage: d.Reason}, nil
	default:
		return &pb.GetDeliberationStatusResponse{Status: StatusRunning}, nil
	}
}

// resultOf is the winner of a completed deliberation as the old
// DeliberationResult, with the metadata the old callers read.
func resultOf(d *council.Deliberation) *pb.DeliberationResult {
	if d.Result == nil || len(d.Result.Ranking) == 0 {
		return nil
	}
	ranking := d.Result.Ranking
	best := ranking[0]
	for _, r := range ranking[1:] {
		if r.Rank < best.Rank {
			best = r
		}
	}
	var sum float64
	for _, r := range ranking {
		sum += r.Score
	}
	total, completed := len(d.Task.Agents), len(ranking)
	return &pb.DeliberationResult{
		AgentId: best.Proposal.AgentID, Proposal: best.Proposal.Content, Reasoning: best.Proposal.Reasoning,
		Score: float32(best.Score),
		Metadata: map[string]string{
			"total_agents":     strconv.Itoa(total),
			"completed_agents": strconv.Itoa(completed),
			"failed_agents":    strconv.Itoa(max(total-completed, 0)),
			"average_score":    strconv.FormatFloat(sum/float64(completed), 'f', 4, 64),
			"rank":             strconv.Itoa(best.Rank),
			"scored":           strconv.FormatBool(best.Scored),
			"role":             best.Proposal.Role,
			"model":            best.Proposal.Model,
			"deliberation_id":  d.ID,
			"task_id":          d.Task.ID,
			"kind":             string(d.Task.Kind),
		},
	}
}

// checkTimeout bounds one dependency check of GetStatus.
const checkTimeout = 5 * time.Second

// probeID is an id no deliberation has: reading it tells whether the store answers.
const probeID = "council-health-probe"

// GetStatus checks the dependencies (the state store, and what WithCheck
// added) and reads the statistics from the durable state, as execute's GET
// /status does: healthy only when every check passes. It fails with
// Unavailable when the statistics cannot be read.
func (s *Server) GetStatus(ctx context.Context, _ *pb.GetStatusRequest) (*pb.GetStatusResponse, error) {
	checks := append([]check{{name: "nats", probe: s.probeStore}}, s.checks...)
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			if err := c.probe(cctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.name, err)
			}
		})
	}
	stats, err := s.stats(ctx)
	wg.Wait()
	if err != nil {
		return nil, statusOf(err).Err()
	}
	out := &pb.GetStatusResponse{Status: StatusHealthy, UptimeSeconds: int64(s.now().Sub(s.started) / time.Second), Stats: stats}
	if err := errors.Join(errs...); err != nil {
		out.Status = StatusUnhealthy
		s.log.WarnContext(ctx, "status: unhealthy", "error", err)
	}
	return out, nil
}

func (s *Server) probeStore(ctx context.Context) error {
	_, _, err := s.store.Get(ctx, probeID)
	if err == nil || errors.Is(err, council.ErrNotFound) {
		return nil
	}
	return err
}

// stats are execute's statistics (the durable tally and the index of
// running deliberations) in the old message.
func (s *Server) stats(ctx context.Context) (*pb.RayExecutorStats, error) {
	tally, err := s.store.Tally(ctx)
	if err != nil {
		return nil, fmt.Errorf("rayexecutor: stats: %w", err)
	}
	active, err := s.store.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("rayexecutor: stats: %w", err)
	}
	var running int64
	for _, d := range active {
		if !d.Status.Terminal() {
			running++
		}
	}
	return &pb.RayExecutorStats{
		TotalDeliberations: tally.Completed + tally.Failed + running, ActiveDeliberations: running,
		CompletedDeliberations: tally.Completed, FailedDeliberations: tally.Failed,
		AverageExecutionTimeMs: float32(tally.Mean().Seconds() * 1000),
	}, nil
}

// GetActiveJobs lists the running deliberations, oldest first; the
// submission id is the Ray job's for backend ray, else the deliberation id.
func (s *Server) GetActiveJobs(ctx context.Context, _ *pb.GetActiveJobsRequest) (*pb.GetActiveJobsResponse, error) {
	all, err := s.store.Active(ctx)
	if err != nil {
		return nil, statusOf(fmt.Errorf("rayexecutor: active jobs: %w", err)).Err()
	}
	slices.SortFunc(all, func(a, b *council.Deliberation) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
	now := s.now()
	out := &pb.GetActiveJobsResponse{}
	for _, d := range all {
		if d.Status.Terminal() {
			continue
		}
		job := &pb.JobInfo{
			JobId: d.ID, Name: "council-" + string(d.Task.Kind) + "-" + d.ID, Status: JobRunning, SubmissionId: d.ID,
			Role: d.Task.Role, TaskId: d.Task.ID, Runtime: runtime(now.Sub(d.StartedAt)),
		}
		if !d.StartedAt.IsZero() {
			job.StartTime = timestamppb.New(d.StartedAt)
		}
		if d.Job != nil && d.Job.SubmissionID != "" {
			job.SubmissionId = d.Job.SubmissionID
		}
		out.Jobs = append(out.Jobs, job)
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// runtime formats d as the old service did: "1m 5s".
func runtime(d time.Duration) string {
	sec := int64(max(d, 0) / time.Second)
	return fmt.Sprintf("%dm %ds", sec/60, sec%60)
}
