package execute_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/functions/execute"
	"council.dev/shared/counciltest"
	"council.dev/shared/host/hosttest"
)

// TestModelOutsideTheAllowListIsRefusedAtAcceptance: a request naming a
// model the operator does not allow — the task's, an agent's or a
// fallback — gets a 400 naming it, and nothing is stored or sent.
func TestModelOutsideTheAllowListIsRefusedAtAcceptance(t *testing.T) {
	tests := []struct {
		name string
		edit func(data map[string]any)
		want string
	}{
		{"task model", func(d map[string]any) { d["model"] = "gpt-9" }, `model "gpt-9" is not allowed`},
		{"agent model", func(d map[string]any) {
			d["agents"].([]any)[1].(map[string]any)["model"] = "gpt-9"
		}, `agents[1].model "gpt-9" is not allowed`},
		{"fallback model", func(d map[string]any) {
			d["agents"].([]any)[0].(map[string]any)["fallback_models"] = []string{"council-tiny", "gpt-9"}
		}, `agents[0].fallback_models[1] "gpt-9" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, em := counciltest.NewStore(), &counciltest.Emitter{}
			f, err := execute.New(store, em, execute.WithClock(func() time.Time { return t0 }), execute.WithModels("council-tiny", "council-small"))
			if err != nil {
				t.Fatal(err)
			}
			e := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
			var data map[string]any
			if err := json.Unmarshal(e.Data(), &data); err != nil {
				t.Fatal(err)
			}
			tt.edit(data)
			if err := e.SetData(event.ApplicationJSON, data); err != nil {
				t.Fatal(err)
			}
			resp := hosttest.Post(t, hosttest.Server(t, f.Handle).URL, e)
			if resp.Status != http.StatusBadRequest || resp.Retryable {
				t.Fatalf("status %d retryable=%v (%s), want 400, not retryable", resp.Status, resp.Retryable, resp.Error)
			}
			if !strings.Contains(resp.Error, tt.want) || !strings.Contains(resp.Error, "allowed: council-tiny, council-small") {
				t.Errorf("error %q does not say %q and what is allowed", resp.Error, tt.want)
			}
			if n := len(em.Types()); n != 0 {
				t.Errorf("%d events sent for a refused request", n)
			}
		})
	}
	// Allowed models and fallbacks are accepted.
	f, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{}, execute.WithModels("council-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	resp := hosttest.Post(t, hosttest.Server(t, f.Handle).URL, fixture(t, "deliberation.requested.v1/valid/fallback_models.json"))
	if resp.Status != http.StatusOK && resp.Status != http.StatusAccepted {
		t.Fatalf("allowed fallback: status %d (%s)", resp.Status, resp.Error)
	}
}
