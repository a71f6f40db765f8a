package execute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// The queries execute answers over HTTP (see events/openapi.yaml). They read the
// durable state at query time, so every instance answers the same, a
// restart loses nothing, and asking twice changes nothing.
const (
	RouteDeliberation = "GET /deliberations/{id}"
	RouteFind         = "GET /deliberations"
	RouteStatus       = "GET /status"
	RouteJobs         = "GET /jobs"
	// routeNoDeliberation catches what RouteDeliberation does not match
	// (an empty id, an id with a slash): no deliberation has such an id,
	// and the answer is the documented JSON 404, not the mux's plain text.
	routeNoDeliberation = "GET /deliberations/"
)

// Service statuses of GET /status (events.ServiceHealthy, events.ServiceUnhealthy).
const (
	Healthy   = events.ServiceHealthy
	Unhealthy = events.ServiceUnhealthy
)

// StatusNotFound is the status GET /deliberations/{id} answers for an unknown id.
const StatusNotFound = events.StatusNotFound

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

// The answers of the queries are the contract's types (events/query.go,
// documented by events/openapi.yaml); these aliases name them here.
type (
	// Deliberation is the answer of GET /deliberations/{id}.
	Deliberation = events.DeliberationView
	// Job is the Ray job of a backend ray deliberation.
	Job = events.JobView
	// ServiceStatus is the answer of GET /status.
	ServiceStatus = events.ServiceStatus
	// Check is the outcome of one dependency check.
	Check = events.Check
	// Stats are computed from every stored deliberation.
	Stats = events.Stats
	// ActiveJob is one entry of GET /jobs: a running deliberation.
	ActiveJob = events.ActiveJob
)

// Routes returns the query routes, net/http patterns to handlers, to mount
// on the function's HTTP server (host.WithRoute).
func (f *Function) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		RouteDeliberation:   http.HandlerFunc(f.serveDeliberation),
		RouteFind:           http.HandlerFunc(f.serveFind),
		routeNoDeliberation: http.HandlerFunc(serveNoDeliberation),
		RouteStatus:         http.HandlerFunc(f.serveStatus),
		RouteJobs:           http.HandlerFunc(f.serveJobs),
		RouteEvents:         http.HandlerFunc(f.serveEvents),
		RouteView:           http.HandlerFunc(f.serveView),
		RouteRanking:        http.HandlerFunc(f.serveRanking),
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
	writeJSON(w, http.StatusOK, f.view(d, f.now()))
}

// view is how the queries show d at now.
func (f *Function) view(d *council.Deliberation, now time.Time) Deliberation {
	v := Deliberation{
		DeliberationID: d.ID, TaskID: d.Task.ID, Kind: string(d.Task.Kind), Status: string(d.Status),
		Backend: string(d.Task.Backend), StartedAt: timePtr(d.StartedAt), FinishedAt: timePtr(d.FinishedAt),
		DurationMS: elapsed(d, now).Milliseconds(), Reason: d.Reason, Job: jobOf(d.Job, true),
		Stage: d.Stage, Phase: string(d.Phase), Agents: progressOf(d),
	}
	if d.Status == council.StatusCompleted {
		v.Result = events.NewCompleted(f.source, d, now).Data
	}
	return v
}

// progressOf is each agent's progress in d: its calls done, pending and
// failed; none for a deliberation without work of its own (a Ray job's).
func progressOf(d *council.Deliberation) []events.AgentProgress {
	if len(d.Work) == 0 {
		return nil
	}
	out := make([]events.AgentProgress, len(d.Task.Agents))
	at := make(map[string]int, len(d.Task.Agents))
	for i, a := range d.Task.Agents {
		out[i] = events.AgentProgress{AgentID: a.ID, Role: a.Role, State: events.AgentWaiting}
		at[a.ID] = i
	}
	for _, w := range d.Work {
		i, ok := at[w.AgentID]
		if !ok {
			continue
		}
		p := &out[i]
		switch w.State {
		case council.WorkDone:
			p.Done++
		case council.WorkPending:
			p.Pending++
			if w.Stage == d.Stage {
				p.State = events.AgentWorking
			}
		default:
			p.Failed++
		}
	}
	for _, fl := range d.Failures {
		if i, ok := at[fl.AgentID]; ok {
			out[i].State = events.AgentOut
		}
	}
	if d.Status.Terminal() {
		// Ended: what was asked and not answered never will be.
		for i := range out {
			out[i].Pending = 0
			if out[i].State != events.AgentOut {
				out[i].State = events.AgentDone
			}
		}
	}
	return out
}

// maxFound bounds the answer of GET /deliberations?task_id=.
const maxFound = 100

// taskFinder is a Store that indexes deliberations by task id
// (natsjs.Store.ByTask).
type taskFinder interface {
	ByTask(ctx context.Context, taskID string) ([]string, error)
}

// serveFind answers GET /deliberations?task_id=: the deliberations of the
// task, newest first, at most maxFound.
func (f *Function) serveFind(w http.ResponseWriter, r *http.Request) {
	taskID := r.URL.Query().Get("task_id")
	if taskID == "" {
		writeJSON(w, http.StatusBadRequest, events.ErrorReply{Error: "task_id is required: GET /deliberations?task_id=<task id>"})
		return
	}
	views, err := f.FindByTask(r.Context(), taskID)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, views)
}

// FindByTask returns the deliberations of task taskID as the queries show
// them, newest first, at most 100. Errors wrap council.ErrUnavailable (the
// store) or council.ErrInvalid (a store that does not index task ids).
func (f *Function) FindByTask(ctx context.Context, taskID string) ([]Deliberation, error) {
	tf, ok := f.store.(taskFinder)
	if !ok {
		return nil, council.Invalidf("execute: this store does not index deliberations by task id")
	}
	ids, err := tf.ByTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	var ds []*council.Deliberation
	for _, id := range ids {
		d, _, err := f.store.Get(ctx, id)
		switch {
		case errors.Is(err, council.ErrNotFound):
			continue // its Create failed, or it expired
		case err != nil:
			return nil, err
		}
		if d.Task.ID == taskID {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(a, b *council.Deliberation) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	now := f.now()
	views := make([]Deliberation, 0, min(len(ds), maxFound))
	for _, d := range ds[:min(len(ds), maxFound)] {
		views = append(views, f.view(d, now))
	}
	return views, nil
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

// Stats reads the statistics: the durable tally of ended deliberations,
// the running ones from the store's index, and the count of stored values
// set aside; its cost does not grow with what the store keeps. Errors wrap
// council.ErrUnavailable when the store cannot be read.
func (f *Function) Stats(ctx context.Context) (Stats, error) {
	tally, err := f.store.Tally(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("execute: stats: %w", err)
	}
	active, err := f.store.Active(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("execute: stats: %w", err)
	}
	quarantined, err := f.store.Quarantined(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("execute: stats: %w", err)
	}
	s := Stats{
		Completed: int(tally.Completed), Failed: int(tally.Failed), Quarantined: len(quarantined),
		AverageMS: tally.Mean().Milliseconds(), P50MS: tally.Percentile(50).Milliseconds(), P95MS: tally.Percentile(95).Milliseconds(),
	}
	for _, d := range active {
		if !d.Status.Terminal() {
			s.Active++
		}
	}
	s.Total = s.Completed + s.Failed + s.Active
	return s, nil
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
	all, err := f.store.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("execute: list active deliberations: %w", err)
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

// writeJSON answers status with v, encoded by the contract (events.EncodeReply).
func writeJSON[T events.Reply](w http.ResponseWriter, status int, v T) {
	b, err := events.EncodeReply(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode the answer","retryable":false}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeQueryError answers a failed read: 503 when worth retrying, else 500,
// with the error reply of the contract (events.ErrorReply).
func writeQueryError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if council.Retryable(err) {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, events.ErrorReply{Error: err.Error(), Retryable: council.Retryable(err)})
}
