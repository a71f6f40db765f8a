package rayjobs

// Unit tests of the adapter's own logic (error classification, runtime env
// merge, options), some against httptest servers playing statuses a real Ray
// cannot easily be made to send. The port's contract runs against the real
// Ray head in contract_test.go (counciltest.TestJobRunner) and
// rayjobs_test.go.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
)

func TestNewRejectsBadAddressesAndOptions(t *testing.T) {
	tests := []struct {
		name    string
		address string
		opts    []Option
	}{
		{"empty address", "", nil},
		{"no scheme", "127.0.0.1:8265", nil},
		{"ray client scheme", "ray://127.0.0.1:10001", nil},
		{"query", "http://127.0.0.1:8265?x=1", nil},
		{"nil http client", "http://127.0.0.1:8265", []Option{WithHTTPClient(nil)}},
		{"nil logger", "http://127.0.0.1:8265", []Option{WithLogger(nil)}},
		{"negative CPUs", "http://127.0.0.1:8265", []Option{WithEntrypointResources(-1, 0, nil)}},
		{"negative resource", "http://127.0.0.1:8265", []Option{WithEntrypointResources(1, 0, map[string]float64{"tpu": -2})}},
		{"env_vars not a map", "http://127.0.0.1:8265", []Option{WithRuntimeEnv(map[string]any{"env_vars": "A=1"})}},
		{"env_vars value not a string", "http://127.0.0.1:8265", []Option{WithRuntimeEnv(map[string]any{"env_vars": map[string]any{"A": 1}})}},
		{"empty header name", "http://127.0.0.1:8265", []Option{WithHeaders(map[string]string{"": "x"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.address, tt.opts...); err == nil {
				t.Fatalf("New(%q) = %+v, want an error", tt.address, c)
			}
		})
	}
}

func TestRuntimeEnvForMergesClientAndJob(t *testing.T) {
	tests := []struct {
		name string
		base map[string]any
		spec council.JobSpec
		want map[string]any
	}{
		{
			name: "nothing gives no runtime env",
			want: nil,
		},
		{
			name: "job env alone",
			spec: council.JobSpec{Env: map[string]string{"A": "1"}},
			want: map[string]any{"env_vars": map[string]string{"A": "1"}},
		},
		{
			name: "job env wins over base env, base keeps its other keys",
			base: map[string]any{
				"pip":      []string{"requests"},
				"env_vars": map[string]any{"A": "base", "B": "base"},
			},
			spec: council.JobSpec{Env: map[string]string{"A": "job"}},
			want: map[string]any{
				"pip":      []string{"requests"},
				"env_vars": map[string]string{"A": "job", "B": "base"},
			},
		},
		{
			name: "job working dir URI replaces the base one",
			base: map[string]any{"working_dir": "gcs://_ray_pkg_base.zip"},
			spec: council.JobSpec{WorkingDir: "https://example.com/code.zip"},
			want: map[string]any{"working_dir": "https://example.com/code.zip"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New("http://127.0.0.1:1", WithRuntimeEnv(tt.base))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.runtimeEnvFor(context.Background(), tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("runtime env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRuntimeEnvForDoesNotChangeTheBase(t *testing.T) {
	base := map[string]any{"env_vars": map[string]string{"A": "base"}}
	c, err := New("http://127.0.0.1:1", WithRuntimeEnv(base))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.runtimeEnvFor(context.Background(), council.JobSpec{Env: map[string]string{"A": "job", "B": "job"}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.runtimeEnvFor(context.Background(), council.JobSpec{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"env_vars": map[string]string{"A": "base"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("second job's runtime env (-want +got):\n%s", diff)
	}
}

func TestLocalWorkingDirMustBeADirectory(t *testing.T) {
	c, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(t.TempDir(), "missing")} {
		_, err := c.runtimeEnvFor(context.Background(), council.JobSpec{WorkingDir: dir})
		if !errors.Is(err, council.ErrInvalid) {
			t.Errorf("working dir %s: err = %v, want ErrInvalid", dir, err)
		}
	}
}

func TestZipDirDigestFollowsContent(t *testing.T) {
	write := func(dir, name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		write(d, "main.py", "print(1)\n")
		write(d, "pkg/x.py", "X = 1\n")
		write(d, ".git/HEAD", d) // differs, and is left out
	}
	_, sumA, err := zipDir(a)
	if err != nil {
		t.Fatal(err)
	}
	_, sumB, err := zipDir(b)
	if err != nil {
		t.Fatal(err)
	}
	if sumA != sumB {
		t.Errorf("same files, different digests %s and %s", sumA, sumB)
	}
	write(b, "pkg/x.py", "X = 2\n")
	if _, sumB2, _ := zipDir(b); sumB2 == sumA {
		t.Errorf("changed file, same digest %s", sumA)
	}
}

func TestClassifyRayAnswers(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name    string
		status  int
		body    string
		want    error
		message string
	}{
		{"duplicate submission id", 500, read("duplicate-submission.txt"), council.ErrConflict,
			"ValueError: Job with submission_id probe-1 already exists. Please use a different submission_id."},
		{"delete of a running job", 500, read("delete-running.txt"), council.ErrConflict,
			"RuntimeError: Attempted to delete job 'probe-6', but it is in a non-terminal state PENDING."},
		{"unknown job", 404, "Job nope does not exist", council.ErrNotFound, "Job nope does not exist"},
		{"bad request", 400, "Traceback (most recent call last):\n  File \"x\", line 1\nTypeError: entrypoint_num_cpus must be a number, got <class 'str'>\n",
			council.ErrInvalid, "TypeError: entrypoint_num_cpus must be a number, got <class 'str'>"},
		{"agent rejected the request", 500, "RuntimeError: Request failed with status code 400: bad runtime env.", council.ErrInvalid,
			"RuntimeError: Request failed with status code 400: bad runtime env."},
		{"unauthenticated", 401, "token required", council.ErrInvalid, "token required"},
		{"no agent yet", 500, "No available agent to submit job, please try again later.", council.ErrUnavailable,
			"No available agent to submit job, please try again later."},
		{"proxy down", 502, "", council.ErrUnavailable, "(empty body)"},
		{"rate limited", 429, "slow down", council.ErrUnavailable, "slow down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.status, tt.body); !errors.Is(got, tt.want) {
				t.Errorf("classify = %v, want %v", got, tt.want)
			}
			if got := rayMessage(tt.body); got != tt.message {
				t.Errorf("rayMessage = %q, want %q", got, tt.message)
			}
		})
	}
}

func TestHTTPStatusesBecomeCouncilErrors(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{http.StatusBadRequest, council.ErrInvalid},
		{http.StatusForbidden, council.ErrInvalid},
		{http.StatusNotFound, council.ErrNotFound},
		{http.StatusTooManyRequests, council.ErrUnavailable},
		{http.StatusInternalServerError, council.ErrUnavailable},
		{http.StatusServiceUnavailable, council.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			var gotHeader string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotHeader = r.Header.Get("Authorization")
				http.Error(w, "ray says no", tt.status)
			}))
			defer srv.Close()
			c, err := New(srv.URL, WithHeaders(map[string]string{"Authorization": "Bearer t0k"}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Submit(context.Background(), council.JobSpec{SubmissionID: "s-1", Entrypoint: "echo"})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Submit err = %v, want %v", err, tt.want)
			}
			if gotHeader != "Bearer t0k" {
				t.Errorf("Authorization header = %q, want the configured one", gotHeader)
			}
		})
	}
}

func TestSubmitRejectsIncompleteSpecs(t *testing.T) {
	c, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []council.JobSpec{
		{Entrypoint: "echo"},
		{SubmissionID: "a/b", Entrypoint: "echo"},
		{SubmissionID: "s-1", Entrypoint: "  "},
	} {
		if _, err := c.Submit(context.Background(), spec); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("Submit(%+v) err = %v, want ErrInvalid", spec, err)
		}
	}
}
