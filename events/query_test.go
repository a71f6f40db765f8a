package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// componentSchemas lists each component schema of openapi.yaml with the Go
// type of events that it documents.
var componentSchemas = map[string]reflect.Type{
	"Deliberation":  reflect.TypeFor[events.DeliberationView](),
	"Job":           reflect.TypeFor[events.JobView](),
	"ServiceStatus": reflect.TypeFor[events.ServiceStatus](),
	"Check":         reflect.TypeFor[events.Check](),
	"Stats":         reflect.TypeFor[events.Stats](),
	"ActiveJob":     reflect.TypeFor[events.ActiveJob](),
	"AgentProgress": reflect.TypeFor[events.AgentProgress](),
	"ErrorReply":    reflect.TypeFor[events.ErrorReply](),
	"LiveState":     reflect.TypeFor[events.LiveState](),
	"Call":          reflect.TypeFor[events.Call](),
	"Usage":         reflect.TypeFor[events.Usage](),
}

// completedView is the answer of GET /deliberations/{id} for a completed
// deliberation, its result made by NewCompleted.
func completedView(t *testing.T) (events.DeliberationView, *council.Deliberation) {
	t.Helper()
	d, err := council.New("dlb-query", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.Finish(d, t0.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	start, end := d.StartedAt, d.FinishedAt
	return events.DeliberationView{
		DeliberationID: d.ID, TaskID: d.Task.ID, Kind: string(d.Task.Kind), Status: string(d.Status),
		Backend: "functions", StartedAt: &start, FinishedAt: &end,
		DurationMS: end.Sub(start).Milliseconds(), Result: events.NewCompleted(source, d, end).Data,
	}, d
}

// sample is one value of the query API: the component schema it must
// validate against, the value and its encoding by EncodeReply (or, for the
// parts of an answer, json.Marshal standing in for the answer that holds it).
type sample struct {
	name, schema string
	encoded      []byte
}

func encodeReply[T events.Reply](t *testing.T, v T) []byte {
	t.Helper()
	b, err := events.EncodeReply(v)
	if err != nil {
		t.Fatalf("EncodeReply(%T): %v", v, err)
	}
	return b
}

func querySamples(t *testing.T) []sample {
	t.Helper()
	started, finished := t0, t0.Add(2*time.Second)
	completed, liveD := completedView(t)
	running := events.DeliberationView{
		DeliberationID: "dlb-running", TaskID: "task-1", Kind: "deliberation", Status: "running", Backend: "ray",
		StartedAt: &started, DurationMS: 65000,
		Job: &events.JobView{SubmissionID: "dlb-running-2", State: "RUNNING", Attempt: 2, Message: "Job is running."},
	}
	failed := events.DeliberationView{
		DeliberationID: "dlb-failed", TaskID: "task-2", Kind: "backlog_review", Status: "failed", Backend: "functions",
		StartedAt: &started, FinishedAt: &finished, DurationMS: 2000, Reason: "every agent failed",
	}
	notFound := events.DeliberationView{DeliberationID: "dlb-unknown", Status: events.StatusNotFound}
	working := events.DeliberationView{
		DeliberationID: "dlb-working", TaskID: "task-3", Kind: "deliberation", Status: "running", Backend: "functions",
		StartedAt: &started, DurationMS: 800, Stage: 1, Phase: "critiquing",
		Agents: []events.AgentProgress{
			{AgentID: "dev-1", Role: "DEV", State: events.AgentWorking, Done: 3, Pending: 1},
			{AgentID: "qa-1", Role: "QA", State: events.AgentWaiting, Done: 4},
			{AgentID: "arch-1", Role: "ARCHITECT", State: events.AgentOut, Done: 1, Failed: 1},
		},
	}
	stats := events.Stats{Total: 22, Active: 2, Completed: 10, Failed: 10, AverageMS: 10500, P50MS: 10000, P95MS: 19000}
	healthy := events.ServiceStatus{
		Status: events.ServiceHealthy, UptimeSeconds: 3600, Stats: &stats,
		Checks: map[string]events.Check{"nats": {OK: true, LatencyMS: 1}, "llm": {OK: true, LatencyMS: 12}},
	}
	unhealthy := events.ServiceStatus{
		Status: events.ServiceUnhealthy, UptimeSeconds: 5,
		Checks: map[string]events.Check{
			"nats": {Error: "read the deliberation state: nats: timeout", LatencyMS: 5000},
			"ray":  {Error: "connection refused"},
		},
	}
	jobs := []events.ActiveJob{
		{DeliberationID: "dlb-a", TaskID: "task-a", Role: "architect", Backend: "functions", Status: "running",
			StartedAt: t0, Runtime: "1m 5s"},
		{DeliberationID: "dlb-b", TaskID: "task-b", Role: "dev", Backend: "ray", Status: "running",
			StartedAt: t0.Add(time.Second), Runtime: "1m 4s", Job: &events.JobView{SubmissionID: "dlb-b-1", State: "PENDING"}},
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []sample{
		{"completed", "Deliberation", encodeReply(t, completed)},
		{"running on ray", "Deliberation", encodeReply(t, running)},
		{"failed", "Deliberation", encodeReply(t, failed)},
		{"not found", "Deliberation", encodeReply(t, notFound)},
		{"running with progress", "Deliberation", encodeReply(t, working)},
		{"agent progress", "AgentProgress", mustJSON(working.Agents[0])},
		{"deliberations of a task", "#/paths/~1deliberations/get/responses/200/content/application~1json/schema", encodeReply(t, []events.DeliberationView{working, failed})},
		{"no deliberations of a task", "#/paths/~1deliberations/get/responses/200/content/application~1json/schema", encodeReply[[]events.DeliberationView](t, nil)},
		{"full job", "Job", mustJSON(*running.Job)},
		{"healthy", "ServiceStatus", encodeReply(t, healthy)},
		{"unhealthy, no stats", "ServiceStatus", encodeReply(t, unhealthy)},
		{"failed check", "Check", mustJSON(unhealthy.Checks["ray"])},
		{"stats", "Stats", mustJSON(stats)},
		{"zero stats", "Stats", mustJSON(events.Stats{})},
		{"active job", "ActiveJob", mustJSON(jobs[0])},
		{"active job on ray", "ActiveJob", mustJSON(jobs[1])},
		{"jobs", "#/paths/~1jobs/get/responses/200/content/application~1json/schema", encodeReply(t, jobs)},
		{"no jobs", "#/paths/~1jobs/get/responses/200/content/application~1json/schema", encodeReply[[]events.ActiveJob](t, nil)},
		{"retryable error", "ErrorReply", encodeReply(t, events.ErrorReply{Error: "nats: timeout", Retryable: true})},
		{"permanent error", "ErrorReply", encodeReply(t, events.ErrorReply{Error: "bad request"})},
		{"live state", "LiveState", encodeLive(t, events.NewLiveState(liveD, 7, completed))},
		{"failed call", "Call", marshalSample(t, events.Call{Key: "c.0.a.b", Kind: "critique", AgentID: "a", AuthorID: "b", Attempt: 3,
			State: "failed", RequestedAt: t0, Error: "llm: 503"})},
		{"answered call", "Call", marshalSample(t, events.Call{Key: "p.0.a", Kind: "proposal", AgentID: "a", Attempt: 1,
			State: "done", RequestedAt: t0, StartedAt: new(t0.Add(250 * time.Millisecond)), QueueWaitMS: new(int64(250)), DurationMS: 900})},
		{"usage", "Usage", marshalSample(t, events.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 4})},
	}
}

func encodeLive(t *testing.T, s events.LiveState) []byte {
	t.Helper()
	b, err := events.EncodeLive(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshalSample(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQueryValuesMatchOpenAPI: every encoded value of the query API
// validates against its schema in openapi.yaml, and every component schema
// has samples.
func TestQueryValuesMatchOpenAPI(t *testing.T) {
	_, c := eventstest.OpenAPI(t)
	covered := map[string]bool{}
	for _, s := range querySamples(t) {
		t.Run(s.name, func(t *testing.T) {
			ptr := s.schema
			if !strings.HasPrefix(ptr, "#") {
				covered[s.schema] = true
				ptr = "#/components/schemas/" + s.schema
			}
			sch, err := c.Compile(eventstest.OpenAPIURL + ptr)
			if err != nil {
				t.Fatalf("schema %s: %v", ptr, err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(s.encoded))
			if err != nil {
				t.Fatalf("not JSON: %v: %s", err, s.encoded)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("breaks openapi.yaml %s: %v\n%s", ptr, err, s.encoded)
			}
		})
	}
	for name := range componentSchemas {
		if !covered[name] {
			t.Errorf("no sample of component schema %s", name)
		}
	}
}

// TestOpenAPISchemasMatchStructs: each component schema documents exactly
// the JSON fields of its Go type, requires exactly the ones always written
// (no omitempty), and allows no other; and openapi.yaml has no component
// schema without a Go type.
func TestOpenAPISchemasMatchStructs(t *testing.T) {
	doc, _ := eventstest.OpenAPI(t)
	comps, _ := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range comps {
		if _, ok := componentSchemas[name]; !ok {
			t.Errorf("openapi.yaml component schema %s has no Go type in componentSchemas", name)
		}
	}
	for name, gt := range componentSchemas {
		s, ok := comps[name].(map[string]any)
		if !ok {
			t.Errorf("openapi.yaml has no component schema %s (%s)", name, gt)
			continue
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties is not false", name)
		}
		var fields, required []string
		for f := range gt.Fields() {
			n, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields = append(fields, n)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, n)
			}
		}
		props, _ := s["properties"].(map[string]any)
		var names, schemaRequired []string
		for n := range props {
			names = append(names, n)
		}
		for _, r := range s["required"].([]any) {
			schemaRequired = append(schemaRequired, r.(string))
		}
		for _, l := range [][]string{fields, required, names, schemaRequired} {
			sort.Strings(l)
		}
		if diff := cmp.Diff(fields, names); diff != "" {
			t.Errorf("%s: properties differ from the fields of %s (-struct +schema):\n%s", name, gt, diff)
		}
		if diff := cmp.Diff(required, schemaRequired); diff != "" {
			t.Errorf("%s: required differs from the non-omitempty fields of %s (-struct +schema):\n%s", name, gt, diff)
		}
	}
}

func TestQueryRepliesRoundTrip(t *testing.T) {
	view, d := completedView(t)
	b := encodeReply(t, view)
	got, err := events.DecodeDeliberationView(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(view, got); diff != "" {
		t.Errorf("DeliberationView round trip (-sent +read):\n%s", diff)
	}
	result, err := got.CompletedResult()
	if err != nil {
		t.Fatal(err)
	}
	want, err := events.DecodeCompleted(events.ToEvent(events.NewCompleted(source, d, *view.FinishedAt)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, result); diff != "" {
		t.Errorf("CompletedResult (-event +view):\n%s", diff)
	}

	stats := events.Stats{Total: 3, Active: 1, Completed: 1, Failed: 1, AverageMS: 5, P50MS: 4, P95MS: 6}
	st := events.ServiceStatus{Status: events.ServiceHealthy, UptimeSeconds: 9, Stats: &stats,
		Checks: map[string]events.Check{"nats": {OK: true, LatencyMS: 2}}}
	gotSt, err := events.DecodeServiceStatus(encodeReply(t, st))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, gotSt); diff != "" {
		t.Errorf("ServiceStatus round trip (-sent +read):\n%s", diff)
	}

	jobs := []events.ActiveJob{{DeliberationID: "dlb-a", TaskID: "t", Role: "r", Backend: "ray", Status: "running",
		StartedAt: t0, Runtime: "0m 1s", Job: &events.JobView{SubmissionID: "dlb-a-1", State: "RUNNING"}}}
	gotJobs, err := events.DecodeActiveJobs(encodeReply(t, jobs))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(jobs, gotJobs); diff != "" {
		t.Errorf("[]ActiveJob round trip (-sent +read):\n%s", diff)
	}
	none, err := events.DecodeActiveJobs(encodeReply[[]events.ActiveJob](t, nil))
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("DecodeActiveJobs([]) = %#v, %v; want an empty, non-nil list", none, err)
	}

	e := events.ErrorReply{Error: "nats: timeout", Retryable: true}
	if b := encodeReply(t, e); string(b) != `{"error":"nats: timeout","retryable":true}` {
		t.Errorf("EncodeReply(ErrorReply) = %s", b)
	}
	gotE, err := events.DecodeErrorReply(encodeReply(t, e))
	if err != nil || gotE != e {
		t.Errorf("DecodeErrorReply = %+v, %v; want %+v", gotE, err, e)
	}
}

// TestQueryDecodersReadNewerAnswers: a field this build does not know (an
// execute newer than the client) is ignored, not an error.
func TestQueryDecodersReadNewerAnswers(t *testing.T) {
	v, err := events.DecodeDeliberationView([]byte(`{"deliberation_id":"dlb-a","status":"running","duration_ms":1,"priority":3}`))
	if err != nil || v.DeliberationID != "dlb-a" || v.Status != "running" {
		t.Errorf("DecodeDeliberationView with an unknown field = %+v, %v", v, err)
	}
	st, err := events.DecodeServiceStatus([]byte(`{"status":"healthy","uptime_seconds":1,"checks":{},"stats":null,"region":"eu"}`))
	if err != nil || st.Status != events.ServiceHealthy || st.Stats != nil {
		t.Errorf("DecodeServiceStatus with an unknown field = %+v, %v", st, err)
	}
	e, err := events.DecodeErrorReply([]byte(`{"error":"boom"}`))
	if err != nil || e != (events.ErrorReply{Error: "boom"}) {
		t.Errorf("DecodeErrorReply without retryable = %+v, %v", e, err)
	}
}

func TestQueryDecodersRejectWhatIsNotAnAnswer(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"DeliberationView": func(b []byte) error { _, err := events.DecodeDeliberationView(b); return err },
		"ServiceStatus":    func(b []byte) error { _, err := events.DecodeServiceStatus(b); return err },
		"[]ActiveJob":      func(b []byte) error { _, err := events.DecodeActiveJobs(b); return err },
		"ErrorReply":       func(b []byte) error { _, err := events.DecodeErrorReply(b); return err },
	}
	bodies := map[string][]string{
		"DeliberationView": {``, `404 page not found`, `[]`, `{}`, `null`, `{"status":3}`, `{"status":"running"`},
		"ServiceStatus":    {``, `{}`, `{"status":"healthy","checks":[]}`, `"healthy"`},
		"[]ActiveJob":      {``, `null`, `{}`, `[{"started_at":"yesterday"}]`, `[1]`},
		"ErrorReply":       {``, `{}`, `{"error":""}`, `{"error":1}`, `<html>`, `{"deliberation_id":"x","status":"running"}`},
	}
	for name, decode := range decoders {
		for _, b := range bodies[name] {
			err := decode([]byte(b))
			if !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Decode%s(%q) = %v, want an error wrapping council.ErrInvalid", name, b, err)
				continue
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("Decode%s(%q) = %q, want it to name %s", name, b, err, name)
			}
		}
	}
}

func TestCompletedResultRefusesWhatIsNoResult(t *testing.T) {
	for _, v := range []events.DeliberationView{
		{DeliberationID: "dlb-r", Status: "running"},
		{DeliberationID: "dlb-x", Status: "completed", Result: json.RawMessage(`{"deliberation_id":"dlb-x"}`)},
		{DeliberationID: "dlb-y", Status: "completed", Result: json.RawMessage(`[]`)},
	} {
		if _, err := v.CompletedResult(); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("CompletedResult of %s (%s) = %v, want an error wrapping council.ErrInvalid", v.DeliberationID, v.Result, err)
		}
	}
}

func TestEncodeReplyRefusesABrokenResult(t *testing.T) {
	_, err := events.EncodeReply(events.DeliberationView{DeliberationID: "dlb-z", Status: "completed", Result: json.RawMessage(`{`)})
	if !errors.Is(err, council.ErrInvalid) {
		t.Errorf("EncodeReply with a broken result = %v, want an error wrapping council.ErrInvalid", err)
	}
}

func TestOpenAPIIsEmbedded(t *testing.T) {
	doc, _ := eventstest.OpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi.yaml is OpenAPI %q, want 3.1", v)
	}
	var routes []string
	for p := range doc["paths"].(map[string]any) {
		routes = append(routes, p)
	}
	slices.Sort(routes)
	if want := []string{"/deliberations", "/deliberations/{id}", "/deliberations/{id}/events", "/deliberations/{id}/ranking", "/deliberations/{id}/view", "/jobs", "/status"}; !slices.Equal(routes, want) {
		t.Errorf("openapi.yaml paths = %v, want %v", routes, want)
	}
}
