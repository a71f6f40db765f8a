package events

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// The query API: the JSON answers of execute's read-only HTTP queries
// (GET /deliberations/{id}, GET /status, GET /jobs), documented by
// openapi.yaml, and the error reply of every council HTTP endpoint. The
// functions encode them with EncodeReply, clients decode them with the
// Decode functions below; nobody else marshals them.

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document (YAML) of the query API: its
// routes, statuses and, under components/schemas, the JSON Schema of
// DeliberationView, JobView, ServiceStatus, Check, Stats, ActiveJob and
// ErrorReply. The caller may not modify the returned bytes.
func OpenAPI() []byte { return openAPI }

// Values of the query answers.
const (
	// ServiceHealthy is ServiceStatus.Status when every check passes.
	ServiceHealthy = "healthy"
	// ServiceUnhealthy is ServiceStatus.Status when a check fails.
	ServiceUnhealthy = "unhealthy"
	// StatusNotFound is DeliberationView.Status for an id no deliberation
	// has (answered with 404).
	StatusNotFound = "not_found"
)

// DeliberationView is the answer of GET /deliberations/{id}: where one
// deliberation stands (schema Deliberation of openapi.yaml).
type DeliberationView struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id,omitempty"`
	Kind           string `json:"kind,omitempty"`
	// Status is running, completed, failed, cancelled or not_found.
	Status     string     `json:"status"`
	Backend    string     `json:"backend,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// DurationMS is FinishedAt − StartedAt, or the time so far while running.
	DurationMS int64 `json:"duration_ms"`
	// Result is, once completed, the data of the deliberation.completed.v1
	// event (see CompletedResult).
	Result json.RawMessage `json:"result,omitempty"`
	// Reason says why a failed deliberation failed.
	Reason string `json:"reason,omitempty"`
	// Stage is the stage under way, Phase proposing, critiquing,
	// awaiting_review (the review gate) or done.
	Stage int    `json:"stage"`
	Phase string `json:"phase,omitempty"`
	// Agents is each agent's progress (backend functions).
	Agents []AgentProgress `json:"agents,omitempty"`
	// Job is the Ray job of a backend ray deliberation.
	Job *JobView `json:"job,omitempty"`
}

// Agent states of AgentProgress.
const (
	AgentWorking = "working"
	AgentWaiting = "waiting"
	AgentOut     = "out"
	AgentDone    = "done"
)

// AgentProgress is one agent's progress in a deliberation (schema
// AgentProgress of openapi.yaml).
type AgentProgress struct {
	AgentID string `json:"agent_id"`
	Role    string `json:"role"`
	// State is AgentWorking, AgentWaiting, AgentOut or AgentDone.
	State   string `json:"state"`
	Done    int    `json:"done"`
	Pending int    `json:"pending"`
	Failed  int    `json:"failed"`
}

// CompletedResult decodes Result with the checks of DecodeCompleted (the
// shipped schema of deliberation.completed.v1, strictly, up to
// MaxResultBytes). An absent Result, or one that does not decode, is an
// error wrapping council.ErrInvalid.
func (v DeliberationView) CompletedResult() (Completed, error) {
	if len(v.Result) == 0 {
		return Completed{}, fmt.Errorf("events: deliberation %s: %w", v.DeliberationID,
			council.Invalidf("no result (status %s)", v.Status))
	}
	e := event.New()
	e.SetType(TypeDeliberationCompleted)
	if err := e.SetData(event.ApplicationJSON, []byte(v.Result)); err != nil {
		return Completed{}, fmt.Errorf("events: deliberation %s: result: %w: %w", v.DeliberationID, council.ErrInvalid, err)
	}
	return DecodeCompleted(e)
}

// JobView is the Ray job of a backend ray deliberation, as the queries show
// it (schema Job of openapi.yaml; GET /jobs leaves Attempt and Message out).
type JobView struct {
	// SubmissionID is <deliberation id>-<attempt>.
	SubmissionID string `json:"submission_id"`
	// State is Ray's, as last seen by a sweep: PENDING, RUNNING, SUCCEEDED,
	// FAILED or STOPPED.
	State string `json:"state"`
	// Attempt counts the job's submissions from 1.
	Attempt int `json:"attempt,omitempty"`
	// Message is Ray's message about the job.
	Message string `json:"message,omitempty"`
}

// ServiceStatus is the answer of GET /status: the dependency checks and the
// statistics of the stored deliberations.
type ServiceStatus struct {
	// Status is ServiceHealthy when every check passes, else ServiceUnhealthy.
	Status string `json:"status"`
	// UptimeSeconds counts since the answering instance started.
	UptimeSeconds int64 `json:"uptime_seconds"`
	// Checks has one entry per dependency: nats, llm, and ray when configured.
	Checks map[string]Check `json:"checks"`
	// Stats is null when the state cannot be read.
	Stats *Stats `json:"stats"`
}

// Check is the outcome of one dependency check of GET /status.
type Check struct {
	// OK is true when the dependency answered.
	OK bool `json:"ok"`
	// Error says why it did not.
	Error string `json:"error,omitempty"`
	// LatencyMS is how long the check took.
	LatencyMS int64 `json:"latency_ms"`
}

// Stats come from the durable tally kept as deliberations end (Completed,
// Failed, the execution times) and the index of active ones (Active: those
// running); Total is their sum. Execution times are FinishedAt − StartedAt
// of the ended ones: AverageMS exact, P50MS and P95MS (nearest rank) the
// upper bound of their histogram bucket, at most 25 % above; 0 when none has
// ended. Quarantined counts the stored values set aside because they do not
// decode.
type Stats struct {
	Total       int   `json:"total"`
	Active      int   `json:"active"`
	Completed   int   `json:"completed"`
	Failed      int   `json:"failed"`
	AverageMS   int64 `json:"average_ms"`
	P50MS       int64 `json:"p50_ms"`
	P95MS       int64 `json:"p95_ms"`
	Quarantined int   `json:"quarantined"`
}

// ActiveJob is one entry of GET /jobs (a JSON array, oldest first): a
// running deliberation.
type ActiveJob struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id"`
	Role           string `json:"role"`
	// Backend is functions or ray.
	Backend string `json:"backend"`
	// Status is running.
	Status    string    `json:"status"`
	StartedAt time.Time `json:"started_at"`
	// Runtime is the time since StartedAt, as "1m 5s".
	Runtime string `json:"runtime"`
	// Job is the Ray job (SubmissionID and State only) of a backend ray
	// deliberation.
	Job *JobView `json:"job,omitempty"`
}

// ErrorReply is the JSON body of every error answer of council's HTTP
// endpoints: the CloudEvents receiver of the functions and the queries.
type ErrorReply struct {
	// Error says what went wrong.
	Error string `json:"error"`
	// Retryable tells whether asking again may succeed.
	Retryable bool `json:"retryable"`
}

// Reply is the set of values EncodeReply writes: the answers of the
// queries (Completed: GET /deliberations/{id}/ranking) and the error reply.
type Reply interface {
	DeliberationView | []DeliberationView | ServiceStatus | []ActiveJob | ErrorReply | Completed
}

// EncodeReply returns the JSON body of v (without a trailing newline). A
// nil []ActiveJob encodes as the empty list []. An error wraps
// council.ErrInvalid (it cannot happen with these types short of a
// malformed DeliberationView.Result).
func EncodeReply[T Reply](v T) ([]byte, error) {
	var x any = v
	if jobs, ok := x.([]ActiveJob); ok && jobs == nil {
		x = []ActiveJob{}
	}
	if ds, ok := x.([]DeliberationView); ok && ds == nil {
		x = []DeliberationView{}
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, fmt.Errorf("events: encode %T: %w: %w", v, council.ErrInvalid, err)
	}
	return b, nil
}

// DecodeDeliberationView reads the answer of GET /deliberations/{id} (200
// or 404). Fields this build does not know are ignored, so that a client
// reads the answers of a newer execute; a body without a status is not
// such an answer. An error wraps council.ErrInvalid.
func DecodeDeliberationView(b []byte) (DeliberationView, error) {
	var v DeliberationView
	if err := decodeReply("DeliberationView", b, &v); err != nil {
		return DeliberationView{}, err
	}
	if v.Status == "" {
		return DeliberationView{}, replyError("DeliberationView", council.Invalidf("status is required"))
	}
	return v, nil
}

// DecodeDeliberationViews reads the answer of GET /deliberations?task_id=.
// An error wraps council.ErrInvalid.
func DecodeDeliberationViews(b []byte) ([]DeliberationView, error) {
	var vs []DeliberationView
	if err := decodeReply("[]DeliberationView", b, &vs); err != nil {
		return nil, err
	}
	return vs, nil
}

// DecodeServiceStatus reads the answer of GET /status (200 or 503), like
// DecodeDeliberationView.
func DecodeServiceStatus(b []byte) (ServiceStatus, error) {
	var v ServiceStatus
	if err := decodeReply("ServiceStatus", b, &v); err != nil {
		return ServiceStatus{}, err
	}
	if v.Status == "" {
		return ServiceStatus{}, replyError("ServiceStatus", council.Invalidf("status is required"))
	}
	return v, nil
}

// DecodeActiveJobs reads the answer of GET /jobs, like
// DecodeDeliberationView: a JSON array, which decodes as a non-nil slice.
func DecodeActiveJobs(b []byte) ([]ActiveJob, error) {
	v := []ActiveJob{}
	if err := decodeReply("[]ActiveJob", b, &v); err != nil {
		return nil, err
	}
	if v == nil { // the body was null
		return nil, replyError("[]ActiveJob", council.Invalidf("null, want a JSON array"))
	}
	return v, nil
}

// DecodeErrorReply reads an error reply, like DecodeDeliberationView; a
// body without an error message is not one.
func DecodeErrorReply(b []byte) (ErrorReply, error) {
	var v ErrorReply
	if err := decodeReply("ErrorReply", b, &v); err != nil {
		return ErrorReply{}, err
	}
	if v.Error == "" {
		return ErrorReply{}, replyError("ErrorReply", council.Invalidf("error is required"))
	}
	return v, nil
}

// decodeReply decodes the JSON answer b into v, tolerating unknown fields.
func decodeReply(name string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return replyError(name, council.Invalidf("%s", strings.TrimPrefix(err.Error(), "json: ")))
	}
	return nil
}

// replyError prefixes err, which wraps council.ErrInvalid, with the reply type.
func replyError(name string, err error) error {
	return fmt.Errorf("events: decode %s: %w", name, err)
}
