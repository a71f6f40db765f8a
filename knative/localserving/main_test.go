package localserving

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"council.dev/shared/counciltest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// receiverBin is the test binary testdata/receiver, built once by TestMain.
var receiverBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "localserving")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	receiverBin = filepath.Join(dir, "receiver")
	cmd := exec.Command("go", "build", "-trimpath", "-o", receiverBin, "./testdata/receiver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build testdata/receiver: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// newServing returns a Serving closed at the test's end, its instances'
// output and its log in the test's output.
func newServing(t testing.TB, opts ...Option) *Serving {
	t.Helper()
	base := []Option{
		WithOutput(t.Output()),
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))),
	}
	sv, err := New(append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := sv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sv
}

// knService is a Service as our manifests write them: the autoscaling
// annotations given, containerConcurrency cc, timeoutSeconds timeout (0:
// Knative's default), the readiness probe GET /health/readiness.
func knService(name string, annotations map[string]string, cc, timeout int64) *servingv1.Service {
	svc := &servingv1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "council"}}
	tmpl := &svc.Spec.Template
	tmpl.Annotations = annotations
	tmpl.Spec.ContainerConcurrency = new(cc)
	if timeout > 0 {
		tmpl.Spec.TimeoutSeconds = new(timeout)
	}
	tmpl.Spec.Containers = []corev1.Container{{
		Name:  name,
		Image: "ko://example.dev/" + name,
		Ports: []corev1.ContainerPort{{Name: "http1", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/health/readiness"},
		}},
	}}
	return svc
}

// receiver is the Command of the test receiver with env.
func receiver(env ...string) Command {
	return Command{Path: receiverBin, Env: env}
}

// add adds svc running cmd to sv.
func add(t testing.TB, sv *Serving, svc *servingv1.Service, cmd Command) string {
	t.Helper()
	if err := sv.Add(svc, cmd); err != nil {
		t.Fatalf("Add %s: %v", svc.Name, err)
	}
	return sv.URL(svc.Name)
}

// reply is the receiver's answer to an event.
type reply struct {
	Pid         int `json:"pid"`
	MaxInFlight int `json:"max_in_flight"`
}

// send posts a binary-mode CloudEvent to url, its handling sleeping
// sleepMS, and returns the status and, on 200, the receiver's reply.
func send(url string, sleepMS int) (int, reply, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	if err != nil {
		return 0, reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", strconv.FormatInt(time.Now().UnixNano(), 10))
	req.Header.Set("Ce-Source", "localserving-test")
	req.Header.Set("Ce-Type", "dev.council.test.v1")
	if sleepMS > 0 {
		req.Header.Set("Ce-Sleepms", strconv.Itoa(sleepMS))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp.StatusCode, reply{}, err
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return resp.StatusCode, reply{}, fmt.Errorf("reply %q: %w", body, err)
	}
	return resp.StatusCode, r, nil
}

// mustSend sends as send does and wants 200.
func mustSend(t testing.TB, url string, sleepMS int) reply {
	t.Helper()
	code, r, err := send(url, sleepMS)
	if err != nil || code != http.StatusOK {
		t.Fatalf("send: status %d, error %v; want 200", code, err)
	}
	return r
}

// getJSON decodes GET url's body into v.
func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// gone says whether pid no longer runs: no such process, or a zombie
// waiting for init to reap it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// waitFor fails t unless cond holds within d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !counciltest.Within(d, 10*time.Millisecond, cond) {
		t.Fatalf("not within %v: %s", d, what)
	}
}
