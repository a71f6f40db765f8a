package execute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// The queries execute answers over HTTP (see openapi.yaml). They read the
// durable state at query time, so every instance answers the same, a
// restart loses nothing, and asking twice changes nothing.
const (
	RouteDeliberation = "GET /deliberations/{id}"
	RouteStatus       = "GET /status"
	RouteJobs         = "GET /jobs"
	// routeNoDeliberation catches what RouteDeliberation does not match
	// (an empty id, an id with a slash): no deliberation has such an id,
	// and the answer is the documented JSON 404, not the mux's plain text.
	routeNoDeliberation = "GET /deliberations/"
)

// Service statuses of GET /status.
const (
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
)

// StatusNotFound is the status GET /deliberations/{id} answers for an unknown id.
const StatusNotFound = "not_found"

// checkTimeout bounds one dependency check of GET /status.
const checkTimeout = 5 * time.Second

// probeID is an id no deliberation has (theirs start with "dlb-"): reading
// it tells whether the state store answers.
const probeID = "council-health-probe"

type check struct {
	name  string
	probe func(ctx context.Context) error
}

// WithCheck adds a dependency to GET /status under name: the service is
// healthy only while every probe returns nil. The state store is always
// checked, under "nats"; a check with that name replaces it. A nil probe
// is ignored (a dependency that is not configured); an empty name is an
// error. Typical checks: "llm" (vllm.Client.Ping) and "ray"
// (rayjobs.Client.Version).
func WithCheck(name string, probe func(ctx context.Context) error) Option {
	return func(f *Function) error {
		if name == "" {
			return errors.New("check with an empty name")
		}
		if probe == nil {
			return nil
		}
		f.checks = slices.DeleteFunc(f.checks, func(c check) bool { return c.name == name })
		f.checks = append(f.checks, check{name: name, probe: probe})
		return nil
	}
}

// Deliberation is the answer of GET /deliberations/{id}.
type Deliberation struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id,omitempty"`
	Kind           string `json:"kind,omitempty"`
	// Status is running, completed, failed or not_found.
	Status     string     `json:"status"`
	Backend    string     `json:"backend,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// DurationMS is FinishedAt − StartedAt, or the time so far while running.
	DurationMS int64 `json:"duration_ms"`
	// Result is the data of the deliberation.completed event.
	Result json.RawMessage `json:"result,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Job    *Job            `json:"job,omitempty"`
}

// Job is the Ray job of a backend ray deliberation.
type Job struct {
	SubmissionID string `json:"submission_id"`
	// State is Ray's: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED.
	State   string `json:"state"`
	Attempt int    `json:"attempt,omitempty"`
	Message string `json:"message,omitempty"`
}

// ServiceStatus is the answer of GET /status.
type ServiceStatus struct {
	// Status is healthy when every check passes, else unhealthy.
	Status        string           `json:"status"`
	UptimeSeconds int64            `json:"uptime_seconds"`
	Checks        map[string]Check `json:"checks"`
	// Stats is null when the state cannot be read.
	Stats *Stats `json:"stats"`
}

// Check is the outcome of one dependency check.
type Check struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	LatencyMS int64  `json:"latency_ms"`
}

// Stats are computed from every stored deliberation. Execution times are
// FinishedAt − StartedAt of the ended (completed or failed) ones.
type Stats struct {
	Total     int   `json:"total"`
	Active    int   `json:"active"`
	Completed int   `json:"completed"`
	Failed    int   `json:"failed"`
	AverageMS int64 `json:"average_ms"`
	P50MS     int64 `json:"p50_ms"`
	P95MS     int64 `json:"p95_ms"`
}

// ActiveJob is one entry of GET /jobs: a running deliberation.
type ActiveJob struct {
	DeliberationID string    `json:"deliberation_id"`
	TaskID         string    `json:"task_id"`
	Role           string    `json:"role"`
	Backend        string    `json:"backend"`
	Status         string    `json:"status"`
	StartedAt      time.Time `json:"started_at"`
	// Runtime is the time since StartedAt, as "1m 5s".
	Runtime string `json:"runtime"`
	Job     *Job   `json:"job,omitempty"`
}

// Routes returns the query routes, net/http patterns to handlers, to mount
// on the function's HTTP server (host.WithRoute).
func (f *Function) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		RouteDeliberation:   http.HandlerFunc(f.serveDeliberation),
		routeNoDeliberation: http.HandlerFunc(serveNoDeliberation),
		RouteStatus:         http.HandlerFunc(f.serveStatus),
		RouteJobs:           http.HandlerFunc(f.serveJobs),
	}
}

// QueryHandler serves the query routes alone (tests, a separate listener).
func (f *Function) QueryHandler() http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range f.Routes() {
		mux.Handle(pattern, h)
	}
	return mux
}

func serveNoDeliberation(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/deliberations/")
	writeJSON(w, http.StatusNotFound, Deliberation{DeliberationID: id, Status: StatusNotFound})
}

func (f *Function) serveDeliberation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, _, err := f.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, council.ErrNotFound), errors.Is(err, council.ErrInvalid):
		// An id the store cannot even hold names no deliberation either.
		writeJSON(w, http.StatusNotFound, Deliberation{DeliberationID: id, Status: StatusNotFound})
		return
	case err != nil:
		writeQueryError(w, err)
		return
	}
	now := f.now()
	v := Deliberation{
		DeliberationID: d.ID, TaskID: d.Task.ID, Kind: string(d.Task.Kind), Status: string(d.Status),
		Backend: string(d.Task.Backend), StartedAt: timePtr(d.StartedAt), FinishedAt: timePtr(d.FinishedAt),
		DurationMS: elapsed(d, now).Milliseconds(), Reason: d.Reason, Job: jobOf(d.Job, true),
	}
	if d.Status == council.StatusCompleted {
		v.Result = events.NewCompleted(f.source, d, now).Data
	}
	writeJSON(w, http.StatusOK, v)
}

func (f *Function) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := f.Status(r.Context())
	code := http.StatusOK
	if st.Status != Healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

// Status checks the dependencies and computes the stats from the stored
// state (what GET /status answers).
func (f *Function) Status(ctx context.Context) ServiceStatus {
	checks := f.checks
	if !slices.ContainsFunc(checks, func(c check) bool { return c.name == "nats" }) {
		checks = append([]check{{name: "nats", probe: f.probeStore}}, checks...)
	}
	out := ServiceStatus{Status: Healthy, UptimeSeconds: int64(f.now().Sub(f.started) / time.Second), Checks: map[string]Check{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			start := time.Now()
			err := c.probe(cctx)
			res := Check{OK: err == nil, LatencyMS: time.Since(start).Milliseconds()}
			if err != nil {
				res.Error = err.Error()
			}
			mu.Lock()
			out.Checks[c.name] = res
			mu.Unlock()
		})
	}
	stats, err := f.Stats(ctx)
	wg.Wait()
	if err != nil {
		out.Checks["nats"] = Check{Error: "read the deliberation state: " + err.Error()}
	} else {
		out.Stats = &stats
	}
	for _, c := range out.Checks {
		if !c.OK {
			out.Status = Unhealthy
		}
	}
	return out
}

// probeStore reads an id no deliberation has: not found means the store answers.
func (f *Function) probeStore(ctx context.Context) error {
	_, _, err := f.store.Get(ctx, probeID)
	if err == nil || errors.Is(err, council.ErrNotFound) {
		return nil
	}
	return err
}

// Stats computes the statistics of every stored deliberation. Errors wrap
// council.ErrUnavailable when the store cannot be listed.
func (f *Function) Stats(ctx context.Context) (Stats, error) {
	all, err := f.list(ctx)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	var times []time.Duration
	for _, d := range all {
		s.Total++
		switch d.Status {
		case council.StatusCompleted:
			s.Completed++
		case council.StatusFailed:
			s.Failed++
		default:
			s.Active++
		}
		if d.Status.Terminal() && !d.FinishedAt.IsZero() && !d.StartedAt.IsZero() {
			times = append(times, d.FinishedAt.Sub(d.StartedAt))
		}
	}
	if len(times) == 0 {
		return s, nil
	}
	slices.Sort(times)
	var sum time.Duration
	for _, t := range times {
		sum += t
	}
	s.AverageMS = (sum / time.Duration(len(times))).Milliseconds()
	s.P50MS = percentile(times, 50).Milliseconds()
	s.P95MS = percentile(times, 95).Milliseconds()
	return s, nil
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (f *Function) serveJobs(w http.ResponseWriter, r *http.Request) {
	jobs, err := f.ActiveJobs(r.Context())
	if err != nil {
		writeQueryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, jobs)
}

// ActiveJobs returns the running deliberations, oldest first (what GET
// /jobs answers). Errors wrap council.ErrUnavailable.
func (f *Function) ActiveJobs(ctx context.Context) ([]ActiveJob, error) {
	all, err := f.list(ctx)
	if err != nil {
		return nil, err
	}
	now := f.now()
	out := []ActiveJob{}
	for _, d := range all {
		if d.Status.Terminal() {
			continue
		}
		out = append(out, ActiveJob{
			DeliberationID: d.ID, TaskID: d.Task.ID, Role: d.Task.Role, Backend: string(d.Task.Backend),
			Status: string(d.Status), StartedAt: d.StartedAt, Runtime: runtime(now.Sub(d.StartedAt)),
			Job: jobOf(d.Job, false),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].DeliberationID < out[j].DeliberationID
	})
	return out, nil
}

func (f *Function) list(ctx context.Context) ([]*council.Deliberation, error) {
	all, err := f.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("execute: list deliberations: %w", err)
	}
	return all, nil
}

// runtime formats d as "1m 5s" (minutes are not folded into hours).
func runtime(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	return fmt.Sprintf("%dm %ds", s/60, s%60)
}

func elapsed(d *council.Deliberation, now time.Time) time.Duration {
	switch {
	case d.StartedAt.IsZero():
		return 0
	case !d.FinishedAt.IsZero():
		return d.FinishedAt.Sub(d.StartedAt)
	default:
		return max(now.Sub(d.StartedAt), 0)
	}
}

func jobOf(j *council.JobRef, full bool) *Job {
	if j == nil {
		return nil
	}
	v := &Job{SubmissionID: j.SubmissionID, State: string(j.State)}
	if full {
		v.Attempt, v.Message = j.Attempt, j.Message
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeQueryError answers a failed read: 503 when worth retrying, else 500.
func writeQueryError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if council.Retryable(err) {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
