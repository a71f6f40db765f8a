package execute_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"council.dev/events/eventstest"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// openAPI is the query API's document (events/openapi.yaml, embedded in
// the contract module: events.OpenAPI), loaded for validating answers
// against it: the schema of each documented response is compiled from the
// document itself (OpenAPI 3.1 schemas are JSON Schema 2020-12).
type openAPI struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	doc, c := eventstest.OpenAPI(t)
	return &openAPI{doc: doc, compiler: c}
}

// pointerEscape escapes one JSON pointer token.
func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// check validates one answer of GET path (documented as route) against the
// response the document gives for its status: the status must be
// documented, the content type application/json, the body must validate.
func (o *openAPI) check(t *testing.T, route string, rec *httptest.ResponseRecorder) {
	t.Helper()
	op, ok := o.doc["paths"].(map[string]any)[route].(map[string]any)["get"].(map[string]any)
	if !ok {
		t.Fatalf("openapi.yaml documents no GET %s", route)
	}
	code := strconv.Itoa(rec.Code)
	resp, ok := op["responses"].(map[string]any)[code].(map[string]any)
	if !ok {
		t.Fatalf("GET %s answered %d, which openapi.yaml does not document: %s", route, rec.Code, rec.Body)
	}
	ptr := "#/paths/" + pointerEscape(route) + "/get/responses/" + code
	if ref, ok := resp["$ref"].(string); ok {
		ptr = ref
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s %d: Content-Type %q, want application/json", route, rec.Code, ct)
	}
	s, err := o.compiler.Compile(eventstest.OpenAPIURL + ptr + "/content/application~1json/schema")
	if err != nil {
		t.Fatalf("schema of GET %s %d: %v", route, rec.Code, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("GET %s %d: body is not JSON: %v: %s", route, rec.Code, err, rec.Body)
	}
	if err := s.Validate(inst); err != nil {
		t.Errorf("GET %s %d: the answer breaks openapi.yaml: %v\n%s", route, rec.Code, err, rec.Body)
	}
}

// TestQueriesAnswerWhatOpenAPISays: every query answer, errors included,
// has a status openapi.yaml documents for its route and a body that
// validates against the documented schema (which allows no undocumented
// field).
func TestQueriesAnswerWhatOpenAPISays(t *testing.T) {
	api := loadOpenAPI(t)
	store, c := counciltest.NewStore(), &clock{t0.Add(time.Minute)}
	seed(t, store, "dlb-running", council.BackendRay, council.StatusRunning, t0, 0)
	seed(t, store, "dlb-done", council.BackendFunctions, council.StatusCompleted, t0, 1500*time.Millisecond)
	seed(t, store, "dlb-failed", council.BackendFunctions, council.StatusFailed, t0, 2*time.Second)
	healthy, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	unhealthy, err := execute.New(store, &counciltest.Emitter{}, execute.WithClock(c.Now),
		execute.WithCheck("llm", func(context.Context) error { return errors.New("connection refused") }))
	if err != nil {
		t.Fatal(err)
	}
	down, err := execute.New(&brokenStore{Store: counciltest.NewStore()}, &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, route, path string
		fn                *execute.Function
		want              int
	}{
		{"running", "/deliberations/{id}", "/deliberations/dlb-running", healthy, http.StatusOK},
		{"completed", "/deliberations/{id}", "/deliberations/dlb-done", healthy, http.StatusOK},
		{"failed", "/deliberations/{id}", "/deliberations/dlb-failed", healthy, http.StatusOK},
		{"unknown", "/deliberations/{id}", "/deliberations/dlb-unknown", healthy, http.StatusNotFound},
		{"id no store can hold", "/deliberations/{id}", "/deliberations/a.*.%3E", healthy, http.StatusNotFound},
		{"id with a slash", "/deliberations/{id}", "/deliberations/dlb-a/b", healthy, http.StatusNotFound},
		{"empty id", "/deliberations/{id}", "/deliberations/", healthy, http.StatusNotFound},
		{"store down", "/deliberations/{id}", "/deliberations/dlb-x", down, http.StatusServiceUnavailable},
		{"status healthy", "/status", "/status", healthy, http.StatusOK},
		{"status unhealthy", "/status", "/status", unhealthy, http.StatusServiceUnavailable},
		{"status, store down", "/status", "/status", down, http.StatusServiceUnavailable},
		{"jobs", "/jobs", "/jobs", healthy, http.StatusOK},
		{"jobs, store down", "/jobs", "/jobs", down, http.StatusServiceUnavailable},
		{"deliberations of a task", "/deliberations", "/deliberations?task_id=task-1", healthy, http.StatusOK},
		{"deliberations of an unknown task", "/deliberations", "/deliberations?task_id=nope", healthy, http.StatusOK},
		{"deliberations without task_id", "/deliberations", "/deliberations", healthy, http.StatusBadRequest},
		{"deliberations of a task, store down", "/deliberations", "/deliberations?task_id=task-1", down, http.StatusServiceUnavailable},
		{"ranking", "/deliberations/{id}/ranking", "/deliberations/dlb-done/ranking?aggregation=borda", healthy, http.StatusOK},
		{"ranking of a running one", "/deliberations/{id}/ranking", "/deliberations/dlb-running/ranking", healthy, http.StatusConflict},
		{"ranking, unknown aggregation", "/deliberations/{id}/ranking", "/deliberations/dlb-done/ranking?aggregation=median", healthy, http.StatusBadRequest},
		{"ranking of an unknown one", "/deliberations/{id}/ranking", "/deliberations/dlb-unknown/ranking", healthy, http.StatusNotFound},
		{"ranking, store down", "/deliberations/{id}/ranking", "/deliberations/dlb-x/ranking", down, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.fn.QueryHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.want {
				t.Errorf("GET %s = %d, want %d: %s", tc.path, rec.Code, tc.want, rec.Body)
			}
			api.check(t, tc.route, rec)
		})
	}
}
