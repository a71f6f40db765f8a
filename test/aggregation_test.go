package test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
)

// TestAggregationEndToEnd runs a deliberation ranked by Borda on the real
// LLM server through the local stack (state in NATS JetStream KV), then
// ranks it again from its stored critiques through execute's query route:
// with its own aggregation the answer is what was delivered; with
// confidence it is ranked from the same critiques, whose confidence the
// model stated (the critique schema asks for it); execute makes no LLM
// call (it has no LLM client).
func TestAggregationEndToEnd(t *testing.T) {
	s := startStack(t, false)
	e := request(t, 48)
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["constraints"].(map[string]any)["aggregation"] = "borda"
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	id := send(t, s, e)
	c := await(t, s, id)
	checkCompleted(t, c, "task-42")
	if c.Aggregation != "borda" {
		t.Errorf("aggregation %q, want borda", c.Aggregation)
	}
	stated := 0
	for _, r := range c.Ranking {
		for _, cr := range r.Critiques {
			if cr.Confidence != nil {
				stated++
			}
		}
	}
	if stated != 6 {
		t.Errorf("%d of the 6 final critiques state a confidence, want all (the schema requires it)", stated)
	}
	t.Logf("borda: winner %s, agreement %v, scores %v", c.Winner, fmtPtr(c.Agreement), scoresOf(c))

	q := s.Execute().QueryHandler()
	get := func(path string) events.Completed {
		t.Helper()
		rec := httptest.NewRecorder()
		q.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body)
		}
		out, err := events.DecodeRanking(rec.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	own := get("/deliberations/" + id + "/ranking")
	if own.Winner != c.Winner || own.Aggregation != "borda" || len(own.Ranking) != len(c.Ranking) {
		t.Fatalf("ranking again by borda: winner %s by %s, %d ranked; want what was delivered (%s, %d)",
			own.Winner, own.Aggregation, len(own.Ranking), c.Winner, len(c.Ranking))
	}
	for i := range own.Ranking {
		if a, b := own.Ranking[i], c.Ranking[i]; a.Proposal.AgentID != b.Proposal.AgentID || a.Score != b.Score {
			t.Errorf("rank %d: %s %.3f, delivered %s %.3f", i+1, a.Proposal.AgentID, a.Score, b.Proposal.AgentID, b.Score)
		}
	}
	conf := get("/deliberations/" + id + "/ranking?aggregation=confidence")
	if conf.Aggregation != "confidence" || len(conf.Ranking) != 3 {
		t.Errorf("ranking by confidence: %q, %d ranked", conf.Aggregation, len(conf.Ranking))
	}
	t.Logf("confidence: winner %s, scores %v", conf.Winner, scoresOf(&conf))
	// Asking changed nothing stored: by its own aggregation again, the same.
	if again := get("/deliberations/" + id + "/ranking"); again.Winner != own.Winner || again.Aggregation != "borda" {
		t.Errorf("after ranking by confidence, its own ranking is %s by %s, want %s by borda", again.Winner, again.Aggregation, own.Winner)
	}
}

func scoresOf(c *events.Completed) map[string]float64 {
	out := map[string]float64{}
	for _, r := range c.Ranking {
		out[r.Proposal.AgentID] = r.Score
	}
	return out
}

func fmtPtr(v *float64) any {
	if v == nil {
		return "none"
	}
	return *v
}
