package rayjobs_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"council.dev/shared/adapters/rayjobs"
	"council.dev/shared/council"
)

// rayAnswer is what the fake Ray head answers next.
type rayAnswer struct {
	mu     sync.Mutex
	status int
	body   []byte
}

func (a *rayAnswer) set(status int, body []byte) {
	a.mu.Lock()
	a.status, a.body = status, body
	a.mu.Unlock()
}

func (a *rayAnswer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	status, body := a.status, a.body
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// FuzzRayResponses answers every call of the Jobs API client with an
// arbitrary status and body, as a Ray head of another version, a proxy in
// front of it or a broken one could: the client never panics, and every
// error it returns is classified (a council sentinel), so that execute
// knows whether to retry.
func FuzzRayResponses(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"submission_id":"dlb-1-1","job_id":"02000000","status":"RUNNING","entrypoint":"./council-agent","start_time":1764547200000,"end_time":0,"message":"Job is currently running."}`},
		{200, `[{"submission_id":"dlb-1-1","status":"SUCCEEDED","start_time":1,"end_time":2},{"submission_id":null}]`},
		{200, `{"ray_version":"2.60.0","version":"4","ray_commit":"abc"}`},
		{200, `{"logs":"hello\n"}`},
		{200, `{"submission_id":"dlb-1-1"}`},
		{200, `{"stopped":true}`},
		{500, `Traceback (most recent call last):\nValueError: Job with submission_id dlb-1-1 already exists. Please use a different submission_id.`},
		{500, `{"result":false,"msg":"Failed to get job: status 404"}`},
		{404, `Job dlb-1-1 does not exist`},
		{429, ``},
		{200, `{"status":42,"start_time":"soon"}`},
		{200, `not json`},
	} {
		f.Add(seed.status, []byte(seed.body))
	}
	answer := &rayAnswer{status: 200}
	srv := httptest.NewServer(answer)
	f.Cleanup(srv.Close)
	c, err := rayjobs.New(srv.URL)
	if err != nil {
		f.Fatal(err)
	}
	classified := func(err error) bool {
		for _, s := range []error{council.ErrInvalid, council.ErrNotFound, council.ErrConflict, council.ErrUnavailable, council.ErrTooLarge} {
			if errors.Is(err, s) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		answer.set(status, body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		calls := map[string]func() error{
			"get":     func() error { _, err := c.Get(ctx, "dlb-1-1"); return err },
			"list":    func() error { _, err := c.List(ctx); return err },
			"logs":    func() error { _, err := c.Logs(ctx, "dlb-1-1"); return err },
			"version": func() error { _, err := c.Version(ctx); return err },
			"stop":    func() error { return c.Stop(ctx, "dlb-1-1") },
			"delete":  func() error { return c.Delete(ctx, "dlb-1-1") },
			"submit": func() error {
				_, err := c.Submit(ctx, council.JobSpec{SubmissionID: "dlb-1-1", Entrypoint: "./council-agent"})
				return err
			},
		}
		for name, call := range calls {
			if err := call(); err != nil && !classified(err) {
				t.Fatalf("%s with answer %d %q: error %v is not classified", name, status, body, err)
			}
		}
	})
}
