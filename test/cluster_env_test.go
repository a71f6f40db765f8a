//go:build cluster

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"sigs.k8s.io/yaml"

	"council.dev/events"
	"council.dev/shared/council"
)

// clusterEnv is what the checks share: where the broker ingress and the
// event sink are, the logs followed, the figures so far.
type clusterEnv struct {
	broker string // the broker ingress URL of Broker council
	token  string // an OIDC token for the broker's audience, when it has one
	sink   string // the event sink's base URL (Service orchestrator)
	// pingSource is the CloudEvents source of the sweep PingSource's events.
	pingSource string
	http       *http.Client
	figs       *figures
	// logs follows the pods of each Service: the functions' containers and
	// the dead-letter sink's event-display.
	logs map[string]*podLogs
}

// figures are the numbers the checks measure, each logged as it is taken
// as "FIGURE <check>: <name>=<value>" and printed again as a table at the
// end.
type figures struct {
	mu   sync.Mutex
	rows [][3]string
}

// add logs and keeps one figure. A time.Duration is given in seconds with
// one decimal.
func (f *figures) add(t testing.TB, check, name string, value any) {
	t.Helper()
	var v string
	switch x := value.(type) {
	case time.Duration:
		v = fmt.Sprintf("%.1f", x.Seconds())
	case float64:
		v = fmt.Sprintf("%.1f", x)
	default:
		v = fmt.Sprint(x)
	}
	t.Logf("FIGURE %s: %s=%s", check, name, v)
	f.mu.Lock()
	f.rows = append(f.rows, [3]string{check, name, v})
	f.mu.Unlock()
}

// table returns every figure as an aligned table.
func (f *figures) table() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "check\tfigure\tvalue")
	for _, r := range f.rows {
		v := r[2]
		if len(v) > 160 {
			v = v[:157] + "..."
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", r[0], r[1], v)
	}
	_ = w.Flush()
	return b.String()
}

// sinkEvent is one event the sink recorded (GET /events).
type sinkEvent struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Subject         string          `json:"subject"`
	Time            *time.Time      `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Extensions      map[string]any  `json:"extensions"`
	Data            json.RawMessage `json:"data"`
	ReceivedAt      time.Time       `json:"received_at"`
}

// event rebuilds the CloudEvent, for the events package's decoders.
func (s sinkEvent) event() (event.Event, error) {
	e := event.New()
	e.SetID(s.ID)
	e.SetType(s.Type)
	e.SetSource(s.Source)
	e.SetSubject(s.Subject)
	if s.Time != nil {
		e.SetTime(*s.Time)
	}
	ct := s.DataContentType
	if ct == "" {
		ct = event.ApplicationJSON
	}
	if err := e.SetData(ct, []byte(s.Data)); err != nil {
		return event.Event{}, err
	}
	return e, nil
}

// deliberationOf returns the deliberation_id of a completed or failed event.
func (s sinkEvent) deliberationOf() string {
	var d struct {
		DeliberationID string `json:"deliberation_id"`
	}
	_ = json.Unmarshal(s.Data, &d)
	return d.DeliberationID
}

// sinkEvents returns every event the sink recorded so far.
func (c *clusterEnv) sinkEvents(ctx context.Context) ([]sinkEvent, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.sink+"/events", nil)
	if err != nil {
		return nil, err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("event sink: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return nil, fmt.Errorf("event sink: GET /events: %s: %s", res.Status, b)
	}
	var out []sinkEvent
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("event sink: GET /events: %w", err)
	}
	return out, nil
}

// endings are the deliberation.completed and deliberation.failed events the
// sink received for one deliberation: distinct by CloudEvent id (the broker
// delivers at least once; a redelivery has the same id), and every delivery.
type endings struct {
	completed, failed                     []sinkEvent
	completedDeliveries, failedDeliveries int
}

// endsOf sorts the sink's events by deliberation id.
func endsOf(evs []sinkEvent) map[string]*endings {
	out := map[string]*endings{}
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Type != events.TypeDeliberationCompleted && e.Type != events.TypeDeliberationFailed {
			continue
		}
		id := e.deliberationOf()
		o := out[id]
		if o == nil {
			o = &endings{}
			out[id] = o
		}
		first := !seen[e.Type+"\x00"+e.ID]
		seen[e.Type+"\x00"+e.ID] = true
		if e.Type == events.TypeDeliberationCompleted {
			o.completedDeliveries++
			if first {
				o.completed = append(o.completed, e)
			}
		} else {
			o.failedDeliveries++
			if first {
				o.failed = append(o.failed, e)
			}
		}
	}
	return out
}

// failReasons returns the reasons of failed events.
func failReasons(evs []sinkEvent) []string {
	var out []string
	for _, e := range evs {
		var f struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(e.Data, &f)
		out = append(out, f.Reason)
	}
	return out
}

// clusterRequest is a valid 3-agent deliberation.requested event (the
// fixture the local checks use, short answers) with a unique id and task
// id; it returns the deliberation id execute derives from it and the task id.
func clusterRequest(t testing.TB, tag string) (event.Event, string, string) {
	t.Helper()
	e := request(t, 24)
	n := time.Now().UnixNano()
	task := fmt.Sprintf("task-cluster-%s-%d", tag, n)
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["task_id"] = task
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	e.SetID(fmt.Sprintf("cluster-%s-%d", tag, n))
	e.SetSubject(task)
	e.SetTime(time.Now())
	if got := len(data["agents"].([]any)); got != 3 {
		t.Fatalf("the request fixture has %d agents, want 3", got)
	}
	return e, council.DeliberationID(e.Source(), e.ID()), task
}

// post sends e to the broker ingress in binary mode, as the Orchestrator
// does, and returns the status it answered.
func (c *clusterEnv) post(ctx context.Context, e event.Event) (int, error) {
	res, err := c.send(ctx, c.broker, "", c.token, e)
	if err != nil {
		return 0, fmt.Errorf("broker ingress: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return res.StatusCode, fmt.Errorf("broker ingress answered %s: %s", res.Status, b)
	}
	return res.StatusCode, nil
}

// postTo sends e in binary mode to url with the Host header host and, when
// not empty, the bearer token, and returns the status answered.
func (c *clusterEnv) postTo(ctx context.Context, url, host, token string, e event.Event) (int, error) {
	res, err := c.send(ctx, url, host, token, e)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode, nil
}

// send posts e in binary mode to url (Host header host when not empty, a
// bearer token when not empty).
func (c *clusterEnv) send(ctx context.Context, url, host, token string, e event.Event) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return nil, err
	}
	if err := cehttp.WriteRequest(binding.WithForceBinary(ctx), binding.ToMessage(&e), req); err != nil {
		return nil, err
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return c.http.Do(req)
}

// mustPost posts e and wants 202.
func (c *clusterEnv) mustPost(t testing.TB, e event.Event) {
	t.Helper()
	if _, err := c.post(context.Background(), e); err != nil {
		t.Fatalf("post %s: %v", e.ID(), err)
	}
}

// pollUntil calls cond every `every` until it says done, for at most
// within; it returns how long that took, or an error with cond's last one.
func pollUntil(within, every time.Duration, cond func(ctx context.Context) (bool, error)) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last error
	for {
		done, err := cond(ctx)
		if done {
			return time.Since(start), nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = fmt.Errorf("condition not met")
			}
			return time.Since(start), fmt.Errorf("after %s: %w", within, last)
		case <-tick.C:
		}
	}
}

// awaitEnd waits for deliberation id to complete or fail and returns its
// endings.
func (c *clusterEnv) awaitEnd(t testing.TB, id string, sent time.Time, within time.Duration) *endings {
	t.Helper()
	var got *endings
	_, err := pollUntil(within, 2*time.Second, func(ctx context.Context) (bool, error) {
		evs, err := c.sinkEvents(ctx)
		if err != nil {
			return false, err
		}
		if o := endsOf(evs)[id]; o != nil {
			got = o
			return true, nil
		}
		return false, fmt.Errorf("deliberation %s: no completed or failed event at the sink yet (%d events there)", id, len(evs))
	})
	if err != nil {
		t.Fatalf("deliberation %s, sent %s ago: %v", id, time.Since(sent).Round(time.Second), err)
	}
	return got
}

// watchEnds keeps watching deliberation id for d more, or until a second
// completed or any failed event shows up, and returns its endings.
func (c *clusterEnv) watchEnds(t testing.TB, id string, d time.Duration) *endings {
	t.Helper()
	got := &endings{}
	_, _ = pollUntil(d, 5*time.Second, func(ctx context.Context) (bool, error) {
		evs, err := c.sinkEvents(ctx)
		if err != nil {
			return false, err
		}
		if o := endsOf(evs)[id]; o != nil {
			got = o
		}
		return len(got.completed) > 1 || len(got.failed) > 0, nil
	})
	return got
}

// pingSourceOf reads the sweep PingSource of knative/base (its name: the
// source of its events is /apis/v1/namespaces/<ns>/pingsources/<name>) and
// its schedule.
func pingSourceOf(t testing.TB) (source, schedule string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "knative", "base", "pingsource.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Schedule string `json:"schedule"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &ps); err != nil {
		t.Fatalf("knative/base/pingsource.yaml: %v", err)
	}
	if ps.Kind != "PingSource" || ps.Metadata.Name == "" {
		t.Fatalf("knative/base/pingsource.yaml holds a %q named %q, want a PingSource", ps.Kind, ps.Metadata.Name)
	}
	return fmt.Sprintf("/apis/v1/namespaces/%s/pingsources/%s", clusterNS, ps.Metadata.Name), ps.Spec.Schedule
}
