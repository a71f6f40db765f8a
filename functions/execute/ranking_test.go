package execute_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// splitReview is a final review on which mean and Borda disagree (the
// domain's TestAggregations): reviewer → author → overall.
var splitReview = map[string]map[string]float64{
	"a1": {"a2": 1.0, "a3": 0.8, "a4": 0.1},
	"a2": {"a1": 0.6, "a3": 0.7, "a4": 0.5},
	"a3": {"a1": 0.3, "a2": 1.0, "a4": 0.2},
	"a4": {"a1": 0.6, "a2": 0.1, "a3": 0.4},
}

// splitDeliberation is a completed deliberation of four agents a1…a4
// whose final review is splitReview: a2 wins on the mean (0.7), a1 by
// Borda (a tie of a1, a2 and a3 at 2/3, broken by the task's order).
func splitDeliberation(t *testing.T, id string) *council.Deliberation {
	t.Helper()
	task := counciltest.Task()
	task.Agents = []council.Agent{{ID: "a1", Role: "DEV"}, {ID: "a2", Role: "QA"}, {ID: "a3", Role: "DEVOPS"}, {ID: "a4", Role: "DATA"}}
	d, err := council.New(id, task, t0)
	if err != nil {
		t.Fatal(err)
	}
	err = counciltest.FinishScoring(d, t0, func(w council.Work) float64 {
		if w.Stage == 0 {
			return 0.7
		}
		return splitReview[w.AgentID][w.AuthorID]
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Outbox = nil
	return d
}

func TestRankingRecomputesWithoutCalls(t *testing.T) {
	store := counciltest.NewStore()
	emitter := &counciltest.Emitter{}
	f, err := execute.New(store, emitter)
	if err != nil {
		t.Fatal(err)
	}
	d := splitDeliberation(t, "dlb-split")
	if d.Status != council.StatusCompleted || d.Result.Winner != "a2" {
		t.Fatalf("seeded %s won by %s, want completed, won by a2 on the mean", d.Status, d.Result.Winner)
	}
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		f.QueryHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}

	rec := get("/deliberations/dlb-split/ranking?aggregation=borda")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET ranking?aggregation=borda = %d: %s", rec.Code, rec.Body)
	}
	borda, err := events.DecodeRanking(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, rk := range borda.Ranking {
		order = append(order, rk.Proposal.AgentID)
	}
	if borda.Winner != "a1" || borda.Aggregation != "borda" || !cmp.Equal(order, []string{"a1", "a2", "a3", "a4"}) {
		t.Errorf("borda: winner %s by %q, order %v; want a1 by borda, a1 a2 a3 a4", borda.Winner, borda.Aggregation, order)
	}
	// Reviewers' orders: a1 a2>a3>a4, a2 a3>a1>a4, a3 a2>a1>a4, a4
	// a1>a3>a2: W = 0.6 (the domain's hand computation).
	if borda.Agreement == nil || *borda.Agreement < 0.6-1e-9 || *borda.Agreement > 0.6+1e-9 {
		t.Errorf("agreement %v, want 0.6", borda.Agreement)
	}
	if s := borda.Ranking[1].ScoreSpread; s == nil || *s < 0.9-1e-9 || *s > 0.9+1e-9 {
		t.Errorf("a2's score spread %v, want 0.9 (1.0, 1.0 and 0.1)", s)
	}

	// Without a parameter: the deliberation's own aggregation, what was
	// delivered.
	rec = get("/deliberations/dlb-split/ranking")
	own, err := events.DecodeRanking(rec.Body.Bytes())
	if err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET ranking = %d, %v: %s", rec.Code, err, rec.Body)
	}
	if diff := cmp.Diff(events.CompletedOf(d), own); diff != "" {
		t.Errorf("the ranking with the deliberation's aggregation differs from its result (-stored +answer):\n%s", diff)
	}

	// Nothing was called, nothing stored changed.
	if n := len(emitter.Sent()); n != 0 {
		t.Errorf("%d events sent, want none", n)
	}
	stored, _, err := store.Get(context.Background(), "dlb-split")
	if err != nil || stored.Result.Winner != "a2" || stored.Result.Aggregation != council.AggregationMean {
		t.Errorf("stored winner %s by %q (%v); want a2 by mean, unchanged", stored.Result.Winner, stored.Result.Aggregation, err)
	}
}

func TestRankingRefuses(t *testing.T) {
	store := counciltest.NewStore()
	f, err := execute.New(store, &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, store, "dlb-running", council.BackendFunctions, council.StatusRunning, t0, 0)
	seed(t, store, "dlb-done", council.BackendFunctions, council.StatusCompleted, t0, 0)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/deliberations/dlb-running/ranking?aggregation=borda", http.StatusConflict},
		{"/deliberations/dlb-done/ranking?aggregation=median", http.StatusBadRequest},
		{"/deliberations/dlb-nope/ranking", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		f.QueryHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("GET %s = %d, want %d: %s", tc.path, rec.Code, tc.want, rec.Body)
			continue
		}
		if tc.want == http.StatusNotFound {
			continue
		}
		reply, err := events.DecodeErrorReply(rec.Body.Bytes())
		if err != nil || reply.Retryable {
			t.Errorf("GET %s: error reply %+v, %v; want one, not retryable", tc.path, reply, err)
		}
	}
}
