package main

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestRerank asks a real execute (its query routes over HTTP) to rank a
// stored deliberation again. Its final review, by all pairs of three
// agents: a1 gives a2 1.0 and a3 0.0; a2 gives a1 0.5 and a3 0.6; a3 gives
// a1 0.5 and a2 0.4. On the mean a2 wins (0.7); by Borda each reviewer's
// order gives every proposal ½ (a cycle), a three-way tie that the task's
// order breaks for a1, and the rankings cancel out: W = 0.
func TestRerank(t *testing.T) {
	review := map[string]map[string]float64{"a1": {"a2": 1, "a3": 0}, "a2": {"a1": 0.5, "a3": 0.6}, "a3": {"a1": 0.5, "a2": 0.4}}
	task := counciltest.Task()
	task.Agents = []council.Agent{{ID: "a1", Role: "DEV"}, {ID: "a2", Role: "QA"}, {ID: "a3", Role: "DEVOPS"}}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	d, err := council.New("dlb-rerank", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.FinishScoring(d, t0, func(w council.Work) float64 {
		if w.Stage == 0 {
			return 0.5
		}
		return review[w.AgentID][w.AuthorID]
	}); err != nil {
		t.Fatal(err)
	}
	store := counciltest.NewStore()
	if _, err := store.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	f, err := execute.New(store, &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(f.QueryHandler())
	defer ts.Close()

	mean := runCLI(t, "", "rerank", "dlb-rerank", "-execute", ts.URL).must(t, 0)
	if !regexp.MustCompile(`1\s+a2\s+QA\s+0\.700\s+0\.60\s+2`).MatchString(mean.stdout) || !strings.Contains(mean.stdout, "winner: a2") ||
		!strings.Contains(mean.stdout, "ranked by mean") {
		t.Errorf("rerank (the deliberation's own, mean):\n%s", mean.stdout)
	}
	borda := runCLI(t, "", "rerank", "dlb-rerank", "-execute", ts.URL, "-aggregation", "borda").must(t, 0)
	for _, want := range []string{"ranked by borda", "winner: a1", "agreement (Kendall's W): 0.000"} {
		if !strings.Contains(borda.stdout, want) {
			t.Errorf("rerank -aggregation borda lacks %q:\n%s", want, borda.stdout)
		}
	}
	if !regexp.MustCompile(`1\s+a1\s+DEV\s+0\.500\s+0\.00\s+2`).MatchString(borda.stdout) {
		t.Errorf("rerank -aggregation borda table:\n%s", borda.stdout)
	}
	asJSON := runCLI(t, "", "rerank", "dlb-rerank", "-execute", ts.URL, "-aggregation", "confidence", "-json").must(t, 0)
	if !strings.Contains(asJSON.stdout, `"aggregation":"confidence"`) {
		t.Errorf("rerank -json: %s", asJSON.stdout)
	}

	bad := runCLI(t, "", "rerank", "dlb-rerank", "-execute", ts.URL, "-aggregation", "median").must(t, 2)
	if !strings.Contains(bad.err, `-aggregation "median": want mean, borda or confidence`) {
		t.Errorf("rerank -aggregation median: stderr %q", bad.err)
	}
	unknown := runCLI(t, "", "rerank", "dlb-nope", "-execute", ts.URL).must(t, 1)
	if !strings.Contains(unknown.err, "404") {
		t.Errorf("rerank of an unknown deliberation: stderr %q", unknown.err)
	}
	if stored, _, err := store.Get(t.Context(), "dlb-rerank"); err != nil || stored.Result.Winner != "a2" {
		t.Errorf("stored winner %v, %v; want a2, unchanged", stored.Result.Winner, err)
	}
}
