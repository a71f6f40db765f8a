package council_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// The agents of counciltest.Task, in task order.
const (
	archi  = "agent-architect-001"
	qa     = "agent-qa-001"
	devops = "agent-devops-001"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func newDeliberation(t *testing.T, task council.Task) *council.Deliberation {
	t.Helper()
	d, err := council.New("dlb-test", task, t0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// clone deep-copies d the way a store does, to compare before and after.
func clone(t *testing.T, d *council.Deliberation) *council.Deliberation {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out council.Deliberation
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// send acknowledges every key of the outbox, as a caller does once it has
// sent their events, and returns them.
func send(d *council.Deliberation) []string {
	keys := slices.Clone(d.Outbox)
	for _, k := range keys {
		d.Acknowledge(k)
	}
	return keys
}

// recordProposal records p and fails the test unless it is accepted.
func recordProposal(t *testing.T, d *council.Deliberation, key string, p council.Proposal, now time.Time) {
	t.Helper()
	if ok, err := d.RecordProposal(key, p, now); !ok || err != nil {
		t.Fatalf("RecordProposal(%s) = %v, %v; want true, nil", key, ok, err)
	}
}

// recordCritique records c and fails the test unless it is accepted.
func recordCritique(t *testing.T, d *council.Deliberation, key string, c council.Critique, now time.Time) {
	t.Helper()
	if ok, err := d.RecordCritique(key, c, now); !ok || err != nil {
		t.Fatalf("RecordCritique(%s) = %v, %v; want true, nil", key, ok, err)
	}
}

// recordFailure records a failure and fails the test unless it is accepted.
func recordFailure(t *testing.T, d *council.Deliberation, key string, attempt int, reason string, retryable bool, now time.Time) {
	t.Helper()
	if ok, err := d.RecordFailure(key, attempt, reason, retryable, now); !ok || err != nil {
		t.Fatalf("RecordFailure(%s, %d) = %v, %v; want true, nil", key, attempt, ok, err)
	}
}

var usageP = council.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
var usageC = council.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}

func prop(agent string, stage int) council.Proposal {
	return council.Proposal{AgentID: agent, Content: fmt.Sprintf("proposal of %s at stage %d", agent, stage), Model: "m", Usage: usageP}
}

func crit(reviewer string, overall float64) council.Critique {
	scores := map[string]float64{}
	for _, r := range council.DefaultRubric() {
		scores[r] = overall
	}
	return council.Critique{ReviewerID: reviewer, Scores: scores, Overall: overall,
		Issues: []string{"issue from " + reviewer}, Model: "m", Usage: usageC}
}

// plan says how the fake workers answer: score gives a critique's overall
// score, fail (when set) makes a piece of work fail permanently.
type plan struct {
	score func(w council.Work) float64
	fail  func(w council.Work) bool
}

// drive plays the generate and critique functions: wave after wave it sends
// the outbox and answers every work key, until the deliberation ends. It
// returns the keys sent, per wave.
func drive(t *testing.T, d *council.Deliberation, now time.Time, p plan) [][]string {
	t.Helper()
	var waves [][]string
	for range 50 {
		keys := send(d)
		if len(keys) == 0 {
			t.Fatalf("outbox empty while %s in stage %d %s", d.Status, d.Stage, d.Phase)
		}
		waves = append(waves, keys)
		if d.Status.Terminal() {
			return waves
		}
		for _, k := range keys {
			w := *d.Work[k]
			var ok bool
			var err error
			switch {
			case p.fail != nil && p.fail(w):
				ok, err = d.RecordFailure(k, w.Attempt, "model crashed", false, now)
			case w.Kind == council.WorkProposal:
				ok, err = d.RecordProposal(k, prop(w.AgentID, w.Stage), now)
			default:
				score := 0.5
				if p.score != nil {
					score = p.score(w)
				}
				ok, err = d.RecordCritique(k, crit(w.AgentID, score), now)
			}
			if err != nil || !ok {
				t.Fatalf("recording %s = %v, %v; want true, nil", k, ok, err)
			}
		}
	}
	t.Fatal("deliberation did not end")
	return nil
}

// rank is the part of a Ranked a user looks at.
type rank struct {
	Rank      int
	Agent     string
	Stage     int
	Score     float64
	Scored    bool
	Reviewers []string
}

func ranks(r *council.Result) []rank {
	var out []rank
	for _, x := range r.Ranking {
		rk := rank{Rank: x.Rank, Agent: x.Proposal.AgentID, Stage: x.Proposal.Stage, Score: x.Score, Scored: x.Scored}
		for _, c := range x.Critiques {
			rk.Reviewers = append(rk.Reviewers, c.ReviewerID)
		}
		out = append(out, rk)
	}
	return out
}

func history(r *council.Result) (props, reviews []string) {
	for _, p := range r.History {
		props = append(props, fmt.Sprintf("%s@%d", p.AgentID, p.Stage))
	}
	for _, c := range r.Reviews {
		reviews = append(reviews, fmt.Sprintf("%s>%s@%d", c.ReviewerID, c.AuthorID, c.Stage))
	}
	return props, reviews
}

var approx = cmpopts.EquateApprox(0, 1e-9)

func TestNewCreatesProposalWorkForEachAgent(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	want := &council.Deliberation{
		ID: "dlb-test", Task: counciltest.Task().WithDefaults(), Status: council.StatusRunning, Stage: 0,
		Phase: council.PhaseProposing, StartedAt: t0, Deadline: t0.Add(council.DefaultTimeout),
		Work: map[string]*council.Work{
			"p.0." + archi:  {Key: "p.0." + archi, Kind: council.WorkProposal, AgentID: archi, Attempt: 1, State: council.WorkPending, RequestedAt: t0},
			"p.0." + qa:     {Key: "p.0." + qa, Kind: council.WorkProposal, AgentID: qa, Attempt: 1, State: council.WorkPending, RequestedAt: t0},
			"p.0." + devops: {Key: "p.0." + devops, Kind: council.WorkProposal, AgentID: devops, Attempt: 1, State: council.WorkPending, RequestedAt: t0},
		},
		Proposals: map[string]council.Proposal{},
		Critiques: map[string]council.Critique{},
		Outbox:    []string{"p.0." + archi, "p.0." + qa, "p.0." + devops},
		Calls:     3,
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("New (-want +got):\n%s", diff)
	}
	var pending []string
	for _, w := range d.Pending() {
		pending = append(pending, w.Key)
	}
	if diff := cmp.Diff([]string{"p.0." + archi, "p.0." + devops, "p.0." + qa}, pending); diff != "" {
		t.Errorf("Pending() keys, in key order (-want +got):\n%s", diff)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := council.New("", counciltest.Task(), t0); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("New(empty id) error = %v, want ErrInvalid", err)
	}
	bad := counciltest.Task()
	bad.Agents = nil
	_, err := council.New("dlb-x", bad, t0)
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "at least one agent") {
		t.Errorf("New(no agents) error = %v, want ErrInvalid naming the agents", err)
	}
}

func TestNewRayBackendCreatesNoWork(t *testing.T) {
	task := counciltest.Task()
	task.Backend = council.BackendRay
	d := newDeliberation(t, task)
	if len(d.Work) != 0 || len(d.Outbox) != 0 || len(d.Pending()) != 0 {
		t.Errorf("ray deliberation has work %v, outbox %v; want none", d.Work, d.Outbox)
	}
	if d.Status != council.StatusRunning {
		t.Errorf("status = %s, want running", d.Status)
	}
}

func TestDeliberationID(t *testing.T) {
	a := council.DeliberationID("council.dev/planning", "evt-1")
	if again := council.DeliberationID("council.dev/planning", "evt-1"); a != again {
		t.Errorf("DeliberationID not deterministic: %q then %q", a, again)
	}
	if !strings.HasPrefix(a, "dlb-") || len(a) != len("dlb-")+24 || !council.ValidAgentID(a) {
		t.Errorf("DeliberationID = %q, want dlb- and 24 hex digits (subject-safe)", a)
	}
	others := []string{
		council.DeliberationID("council.dev/planning", "evt-2"),
		council.DeliberationID("council.dev/other", "evt-1"),
		council.DeliberationID("council.dev/planningevt-1", ""),
		council.DeliberationID("council.dev/plannin", "gevt-1"),
	}
	for _, o := range others {
		if o == a {
			t.Errorf("different source/id gave the same id %q", o)
		}
	}
}

func TestFullFlowRing(t *testing.T) {
	// The ring all along, the final review included (final_review peers;
	// TestFinalReviewByAllPairs has the default).
	task := counciltest.Task()
	task.Constraints.FinalReview = council.FinalReviewPeers
	d := newDeliberation(t, task)

	// Stage 0: every agent proposes.
	if diff := cmp.Diff([]string{"p.0." + archi, "p.0." + qa, "p.0." + devops}, send(d)); diff != "" {
		t.Fatalf("stage 0 sends (-want +got):\n%s", diff)
	}
	for i, a := range []string{archi, qa, devops} {
		ok, err := d.RecordProposal("p.0."+a, prop(a, 0), at(1))
		if !ok || err != nil {
			t.Fatalf("RecordProposal(%s) = %v, %v", a, ok, err)
		}
		if i < 2 && (d.Phase != council.PhaseProposing || len(d.Outbox) != 0) {
			t.Fatalf("after %d proposals: phase %s outbox %v; want still proposing, nothing to send", i+1, d.Phase, d.Outbox)
		}
	}
	if d.Proposals["p.0."+archi].Role != "ARCHITECT" || d.Proposals["p.0."+archi].Stage != 0 {
		t.Errorf("recorded proposal = %+v, want role ARCHITECT stage 0", d.Proposals["p.0."+archi])
	}

	// Ring critiques: each proposal is reviewed by the next agent.
	if d.Phase != council.PhaseCritiquing {
		t.Fatalf("phase = %s, want critiquing", d.Phase)
	}
	wantCrit := []string{council.CritiqueKey(0, archi, qa), council.CritiqueKey(0, qa, devops), council.CritiqueKey(0, devops, archi)}
	if diff := cmp.Diff(wantCrit, send(d)); diff != "" {
		t.Fatalf("critique sends (-want +got):\n%s", diff)
	}
	cr, err := d.CritiqueRequest(council.CritiqueKey(0, archi, qa))
	if err != nil {
		t.Fatal(err)
	}
	if cr.Reviewer.ID != qa || cr.Proposal.AgentID != archi || cr.Proposal.Content != prop(archi, 0).Content || cr.Stage != 0 || cr.Attempt != 1 {
		t.Errorf("CritiqueRequest = reviewer %s of %s (%q) stage %d attempt %d; want qa reviewing architect's stage-0 proposal",
			cr.Reviewer.ID, cr.Proposal.AgentID, cr.Proposal.Content, cr.Stage, cr.Attempt)
	}
	for _, k := range wantCrit {
		w := d.Work[k]
		if ok, err := d.RecordCritique(k, crit(w.AgentID, 0.5), at(2)); !ok || err != nil {
			t.Fatalf("RecordCritique(%s) = %v, %v", k, ok, err)
		}
	}

	// Stage 1: each agent revises its own proposal from its critiques.
	if d.Stage != 1 || d.Phase != council.PhaseProposing {
		t.Fatalf("stage %d phase %s, want 1 proposing", d.Stage, d.Phase)
	}
	if diff := cmp.Diff([]string{"p.1." + archi, "p.1." + qa, "p.1." + devops}, send(d)); diff != "" {
		t.Fatalf("stage 1 sends (-want +got):\n%s", diff)
	}
	req, err := d.ProposalRequest("p.1." + archi)
	if err != nil {
		t.Fatal(err)
	}
	prev := prop(archi, 0)
	prev.Role = "ARCHITECT"
	got := crit(qa, 0.5)
	got.AuthorID = archi
	wantReq := council.ProposalRequest{
		DeliberationID: "dlb-test", Key: "p.1." + archi, Task: d.Task.For(d.Task.Agents[0]), Agent: d.Task.Agents[0], Stage: 1, Attempt: 1,
		Deadline: d.Deadline, Previous: &prev, Critiques: []council.Critique{got},
	}
	if diff := cmp.Diff(wantReq, req); diff != "" {
		t.Errorf("revision ProposalRequest (-want +got):\n%s", diff)
	}
	first, err := d.ProposalRequest("p.0." + qa)
	if err != nil || first.Previous != nil || first.Critiques != nil {
		t.Errorf("stage-0 ProposalRequest = %+v, %v; want no previous proposal and no critiques", first, err)
	}
	for _, a := range []string{archi, qa, devops} {
		if ok, err := d.RecordProposal("p.1."+a, prop(a, 1), at(3)); !ok || err != nil {
			t.Fatalf("RecordProposal(p.1.%s) = %v, %v", a, ok, err)
		}
	}

	// Final review, then ranking.
	wantCrit = []string{council.CritiqueKey(1, archi, qa), council.CritiqueKey(1, qa, devops), council.CritiqueKey(1, devops, archi)}
	if diff := cmp.Diff(wantCrit, send(d)); diff != "" {
		t.Fatalf("final critique sends (-want +got):\n%s", diff)
	}
	final := map[string]float64{archi: 0.6, qa: 0.9, devops: 0.6} // by author: architect and devops tie
	for _, k := range wantCrit {
		w := d.Work[k]
		if ok, err := d.RecordCritique(k, crit(w.AgentID, final[w.AuthorID]), at(42)); !ok || err != nil {
			t.Fatalf("RecordCritique(%s) = %v, %v", k, ok, err)
		}
	}

	if d.Status != council.StatusCompleted || d.Phase != council.PhaseDone || !d.FinishedAt.Equal(at(42)) {
		t.Fatalf("status %s phase %s finished %v; want completed, done, at(42)", d.Status, d.Phase, d.FinishedAt)
	}
	if diff := cmp.Diff([]string{council.OutboxCompleted}, d.Outbox); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	r := d.Result
	wantRanks := []rank{
		{Rank: 1, Agent: qa, Stage: 1, Score: 0.9, Scored: true, Reviewers: []string{devops}},
		{Rank: 2, Agent: archi, Stage: 1, Score: 0.6, Scored: true, Reviewers: []string{qa}},
		{Rank: 3, Agent: devops, Stage: 1, Score: 0.6, Scored: true, Reviewers: []string{archi}},
	}
	if diff := cmp.Diff(wantRanks, ranks(r), approx); diff != "" {
		t.Errorf("ranking (-want +got):\n%s", diff)
	}
	if r.Winner != qa {
		t.Errorf("winner = %s, want %s", r.Winner, qa)
	}
	wantScores := map[string]float64{"correctness": 0.9, "completeness": 0.9, "clarity": 0.9, "feasibility": 0.9}
	if diff := cmp.Diff(wantScores, r.Ranking[0].Scores, approx); diff != "" {
		t.Errorf("winner's criterion scores (-want +got):\n%s", diff)
	}
	props, reviews := history(r)
	if diff := cmp.Diff([]string{archi + "@0", devops + "@0", qa + "@0"}, props); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	wantReviews := []string{qa + ">" + archi + "@0", archi + ">" + devops + "@0", devops + ">" + qa + "@0"}
	if diff := cmp.Diff(wantReviews, reviews); diff != "" {
		t.Errorf("reviews (-want +got):\n%s", diff)
	}
	wantUsage := council.Usage{PromptTokens: 6*1 + 6*10, CompletionTokens: 6*2 + 6*20, TotalTokens: 6*3 + 6*30}
	if r.Usage != wantUsage {
		t.Errorf("usage = %+v, want %+v", r.Usage, wantUsage)
	}
	if r.Duration != 42*time.Second || len(r.Failures) != 0 {
		t.Errorf("duration %v failures %v; want 42s, none", r.Duration, r.Failures)
	}
	for _, w := range d.Work {
		if w.State != council.WorkDone {
			t.Errorf("work %s is %s, want done", w.Key, w.State)
		}
	}
}

func TestFlows(t *testing.T) {
	byAuthor := func(m map[string]float64) func(council.Work) float64 {
		return func(w council.Work) float64 {
			if v, ok := m[w.AuthorID]; ok {
				return v
			}
			return 0.5
		}
	}
	tests := []struct {
		name         string
		mutate       func(*council.Task)
		plan         plan
		waves        [][]string
		status       council.Status
		ranks        []rank
		winner       string
		history      []string
		reviews      []string
		failures     []council.AgentFailure
		reasonPrefix string
	}{
		{
			name:   "peers 2: every proposal reviewed by both other agents, scores averaged",
			mutate: func(t *council.Task) { t.Constraints.Peers = 2 },
			plan: plan{score: func(w council.Work) float64 {
				if w.Stage == 1 && w.AuthorID == devops {
					return map[string]float64{archi: 0.2, qa: 0.8}[w.AgentID] // mean 0.5
				}
				return byAuthor(map[string]float64{archi: 0.7, qa: 0.5})(w)
			}},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"c.0." + archi + "." + qa, "c.0." + archi + "." + devops, "c.0." + qa + "." + devops, "c.0." + qa + "." + archi,
					"c.0." + devops + "." + archi, "c.0." + devops + "." + qa},
				{"p.1." + archi, "p.1." + qa, "p.1." + devops},
				{"c.1." + archi + "." + qa, "c.1." + archi + "." + devops, "c.1." + qa + "." + devops, "c.1." + qa + "." + archi,
					"c.1." + devops + "." + archi, "c.1." + devops + "." + qa},
				{"completed"},
			},
			status: council.StatusCompleted,
			ranks: []rank{
				{Rank: 1, Agent: archi, Stage: 1, Score: 0.7, Scored: true, Reviewers: []string{devops, qa}},
				{Rank: 2, Agent: qa, Stage: 1, Score: 0.5, Scored: true, Reviewers: []string{archi, devops}},
				{Rank: 3, Agent: devops, Stage: 1, Score: 0.5, Scored: true, Reviewers: []string{archi, qa}},
			},
			winner:  archi,
			history: []string{archi + "@0", devops + "@0", qa + "@0"},
			reviews: []string{devops + ">" + archi + "@0", qa + ">" + archi + "@0", archi + ">" + devops + "@0",
				qa + ">" + devops + "@0", archi + ">" + qa + "@0", devops + ">" + qa + "@0"},
		},
		{
			// The ring reviews stages 0 and 1; all pairs review the final stage.
			name:   "rounds 2: two revisions, history keeps stages 0 and 1",
			mutate: func(t *council.Task) { t.Constraints.Rounds = 2 },
			plan:   plan{score: byAuthor(map[string]float64{devops: 0.8})},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"c.0." + archi + "." + qa, "c.0." + qa + "." + devops, "c.0." + devops + "." + archi},
				{"p.1." + archi, "p.1." + qa, "p.1." + devops},
				{"c.1." + archi + "." + qa, "c.1." + qa + "." + devops, "c.1." + devops + "." + archi},
				{"p.2." + archi, "p.2." + qa, "p.2." + devops},
				{"c.2." + archi + "." + qa, "c.2." + archi + "." + devops, "c.2." + qa + "." + devops, "c.2." + qa + "." + archi,
					"c.2." + devops + "." + archi, "c.2." + devops + "." + qa},
				{"completed"},
			},
			status: council.StatusCompleted,
			ranks: []rank{
				{Rank: 1, Agent: devops, Stage: 2, Score: 0.8, Scored: true, Reviewers: []string{archi, qa}},
				{Rank: 2, Agent: archi, Stage: 2, Score: 0.5, Scored: true, Reviewers: []string{devops, qa}},
				{Rank: 3, Agent: qa, Stage: 2, Score: 0.5, Scored: true, Reviewers: []string{archi, devops}},
			},
			winner:  devops,
			history: []string{archi + "@0", devops + "@0", qa + "@0", archi + "@1", devops + "@1", qa + "@1"},
			reviews: []string{qa + ">" + archi + "@0", archi + ">" + devops + "@0", devops + ">" + qa + "@0",
				qa + ">" + archi + "@1", archi + ">" + devops + "@1", devops + ">" + qa + "@1"},
		},
		{
			name: "one agent fails its first proposal: completes with the two survivors",
			plan: plan{fail: func(w council.Work) bool { return w.AgentID == qa }, score: byAuthor(map[string]float64{devops: 0.9})},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"c.0." + archi + "." + devops, "c.0." + devops + "." + archi},
				{"p.1." + archi, "p.1." + devops},
				{"c.1." + archi + "." + devops, "c.1." + devops + "." + archi},
				{"completed"},
			},
			status: council.StatusCompleted,
			ranks: []rank{
				{Rank: 1, Agent: devops, Stage: 1, Score: 0.9, Scored: true, Reviewers: []string{archi}},
				{Rank: 2, Agent: archi, Stage: 1, Score: 0.5, Scored: true, Reviewers: []string{devops}},
			},
			winner:   devops,
			history:  []string{archi + "@0", devops + "@0"},
			reviews:  []string{devops + ">" + archi + "@0", archi + ">" + devops + "@0"},
			failures: []council.AgentFailure{{AgentID: qa, Stage: 0, Reason: "proposal p.0." + qa + " failed after 1 attempt(s): model crashed"}},
		},
		{
			name:   "a reviewer fails in the final review: it leaves the ranking, its victim goes last unscored",
			mutate: func(t *council.Task) { t.Constraints.FinalReview = council.FinalReviewPeers },
			plan:   plan{fail: func(w council.Work) bool { return w.Key == council.CritiqueKey(1, archi, qa) }},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"c.0." + archi + "." + qa, "c.0." + qa + "." + devops, "c.0." + devops + "." + archi},
				{"p.1." + archi, "p.1." + qa, "p.1." + devops},
				{"c.1." + archi + "." + qa, "c.1." + qa + "." + devops, "c.1." + devops + "." + archi},
				{"completed"},
			},
			status: council.StatusCompleted,
			ranks: []rank{
				{Rank: 1, Agent: devops, Stage: 1, Score: 0.5, Scored: true, Reviewers: []string{archi}},
				{Rank: 2, Agent: archi, Stage: 1},
			},
			winner:  devops,
			history: []string{archi + "@0", devops + "@0", qa + "@0", qa + "@1"},
			reviews: []string{qa + ">" + archi + "@0", archi + ">" + devops + "@0", devops + ">" + qa + "@0", devops + ">" + qa + "@1"},
			failures: []council.AgentFailure{{AgentID: qa, Stage: 1,
				Reason: "critique " + council.CritiqueKey(1, archi, qa) + " failed after 1 attempt(s): model crashed"}},
		},
		{
			name: "only one agent survives: completes with its proposal unscored",
			plan: plan{fail: func(w council.Work) bool { return w.AgentID != devops }},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"completed"},
			},
			status: council.StatusCompleted,
			ranks:  []rank{{Rank: 1, Agent: devops, Stage: 0}},
			winner: devops,
			failures: []council.AgentFailure{
				{AgentID: archi, Stage: 0, Reason: "proposal p.0." + archi + " failed after 1 attempt(s): model crashed"},
				{AgentID: qa, Stage: 0, Reason: "proposal p.0." + qa + " failed after 1 attempt(s): model crashed"},
			},
		},
		{
			name: "every agent fails: the deliberation fails and says why",
			plan: plan{fail: func(council.Work) bool { return true }},
			waves: [][]string{
				{"p.0." + archi, "p.0." + qa, "p.0." + devops},
				{"failed"},
			},
			status: council.StatusFailed,
			failures: []council.AgentFailure{
				{AgentID: archi, Stage: 0, Reason: "proposal p.0." + archi + " failed after 1 attempt(s): model crashed"},
				{AgentID: qa, Stage: 0, Reason: "proposal p.0." + qa + " failed after 1 attempt(s): model crashed"},
				{AgentID: devops, Stage: 0, Reason: "proposal p.0." + devops + " failed after 1 attempt(s): model crashed"},
			},
			reasonPrefix: "all agents failed: " + archi + ": proposal p.0." + archi + " failed",
		},
		{
			name:   "single agent deliberation: one proposal, no critique",
			mutate: func(t *council.Task) { t.Agents = t.Agents[:1] },
			waves:  [][]string{{"p.0." + archi}, {"completed"}},
			status: council.StatusCompleted,
			ranks:  []rank{{Rank: 1, Agent: archi, Stage: 0}},
			winner: archi,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := counciltest.Task()
			if tt.mutate != nil {
				tt.mutate(&task)
			}
			d := newDeliberation(t, task)
			waves := drive(t, d, at(9), tt.plan)
			if diff := cmp.Diff(tt.waves, waves); diff != "" {
				t.Errorf("keys sent per wave (-want +got):\n%s", diff)
			}
			if d.Status != tt.status {
				t.Fatalf("status = %s (reason %q), want %s", d.Status, d.Reason, tt.status)
			}
			if diff := cmp.Diff(tt.failures, d.Failures); diff != "" {
				t.Errorf("failures (-want +got):\n%s", diff)
			}
			for _, f := range tt.failures {
				if !d.Failed(f.AgentID) {
					t.Errorf("Failed(%s) = false, want true", f.AgentID)
				}
			}
			if tt.status == council.StatusFailed {
				if !strings.HasPrefix(d.Reason, tt.reasonPrefix) || d.Result != nil {
					t.Errorf("reason %q result %v; want reason starting %q and no result", d.Reason, d.Result, tt.reasonPrefix)
				}
				return
			}
			if diff := cmp.Diff(tt.ranks, ranks(d.Result), approx); diff != "" {
				t.Errorf("ranking (-want +got):\n%s", diff)
			}
			if d.Result.Winner != tt.winner {
				t.Errorf("winner = %s, want %s", d.Result.Winner, tt.winner)
			}
			props, reviews := history(d.Result)
			if diff := cmp.Diff(tt.history, props); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.reviews, reviews); diff != "" {
				t.Errorf("reviews (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.failures, d.Result.Failures); diff != "" {
				t.Errorf("result failures (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSinglePassKindsCompleteAfterOneProposal(t *testing.T) {
	for _, kind := range []council.Kind{council.KindTaskExtraction, council.KindTaskDerivation} {
		t.Run(string(kind), func(t *testing.T) {
			d := newDeliberation(t, taskOf(kind))
			waves := drive(t, d, at(5), plan{})
			if diff := cmp.Diff([][]string{{"p.0.extractor"}, {"completed"}}, waves); diff != "" {
				t.Errorf("keys sent (-want +got):\n%s", diff)
			}
			if d.Status != council.StatusCompleted || d.Result.Winner != "extractor" || len(d.Result.Ranking) != 1 || d.Result.Ranking[0].Scored {
				t.Errorf("status %s result %+v; want completed with one unscored proposal by extractor", d.Status, d.Result)
			}
			for k, w := range d.Work {
				if w.Kind == council.WorkCritique {
					t.Errorf("single-pass deliberation asked for critique %s", k)
				}
			}
		})
	}
}

func TestDuplicateResultsChangeNothing(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	send(d)
	key := "p.0." + archi
	if ok, err := d.RecordProposal(key, prop(archi, 0), at(1)); !ok || err != nil {
		t.Fatalf("first RecordProposal = %v, %v", ok, err)
	}
	before := clone(t, d)
	other := prop(archi, 0)
	other.Content = "a different answer"
	ok, err := d.RecordProposal(key, other, at(2))
	if ok || err != nil {
		t.Errorf("duplicate RecordProposal = %v, %v; want false, nil", ok, err)
	}
	if ok, err := d.RecordFailure(key, 1, "late failure", true, at(2)); ok || err != nil {
		t.Errorf("RecordFailure of done work = %v, %v; want false, nil", ok, err)
	}
	if diff := cmp.Diff(before, d); diff != "" {
		t.Errorf("duplicate proposal changed the deliberation (-before +after):\n%s", diff)
	}

	for _, a := range []string{qa, devops} {
		recordProposal(t, d, "p.0."+a, prop(a, 0), at(3))
	}
	send(d)
	ck := council.CritiqueKey(0, archi, qa)
	if ok, err := d.RecordCritique(ck, crit(qa, 0.5), at(4)); !ok || err != nil {
		t.Fatalf("first RecordCritique = %v, %v", ok, err)
	}
	before = clone(t, d)
	if ok, err := d.RecordCritique(ck, crit(qa, 0.9), at(5)); ok || err != nil {
		t.Errorf("duplicate RecordCritique = %v, %v; want false, nil", ok, err)
	}
	if diff := cmp.Diff(before, d); diff != "" {
		t.Errorf("duplicate critique changed the deliberation (-before +after):\n%s", diff)
	}
}

func TestRetries(t *testing.T) {
	key := "p.0." + archi
	t.Run("retryable failure with retries left asks again", func(t *testing.T) {
		d := newDeliberation(t, counciltest.Task()) // max_retries 1
		send(d)
		ok, err := d.RecordFailure(key, 1, "HTTP 503", true, at(7))
		if !ok || err != nil {
			t.Fatalf("RecordFailure = %v, %v; want true, nil", ok, err)
		}
		want := council.Work{Key: key, Kind: council.WorkProposal, AgentID: archi, Attempt: 2, State: council.WorkPending,
			RequestedAt: at(7), LastError: "HTTP 503"}
		if diff := cmp.Diff(want, *d.Work[key]); diff != "" {
			t.Errorf("work after retryable failure (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{key}, d.Outbox); diff != "" {
			t.Errorf("outbox (-want +got):\n%s", diff)
		}
		if len(d.Failures) != 0 {
			t.Errorf("failures = %v, want none yet", d.Failures)
		}
		req, _ := d.ProposalRequest(key)
		if req.Attempt != 2 {
			t.Errorf("ProposalRequest attempt = %d, want 2", req.Attempt)
		}

		// The failure of the first attempt arriving again is stale.
		before := clone(t, d)
		if ok, err := d.RecordFailure(key, 1, "HTTP 503", true, at(8)); ok || err != nil {
			t.Errorf("stale RecordFailure = %v, %v; want false, nil", ok, err)
		}
		if diff := cmp.Diff(before, d); diff != "" {
			t.Errorf("stale failure changed the deliberation (-before +after):\n%s", diff)
		}

		// The second attempt is the last one.
		if ok, err := d.RecordFailure(key, 2, "HTTP 503 again", true, at(9)); !ok || err != nil {
			t.Fatalf("RecordFailure(attempt 2) = %v, %v", ok, err)
		}
		if d.Work[key].State != council.WorkFailed {
			t.Errorf("work state = %s, want failed", d.Work[key].State)
		}
		want2 := []council.AgentFailure{{AgentID: archi, Reason: "proposal " + key + " failed after 2 attempt(s): HTTP 503 again"}}
		if diff := cmp.Diff(want2, d.Failures); diff != "" {
			t.Errorf("failures (-want +got):\n%s", diff)
		}
	})
	t.Run("retry does not put a key twice in the outbox", func(t *testing.T) {
		task := counciltest.Task()
		task.Constraints.MaxRetries = 3
		d := newDeliberation(t, task) // the key is still in the outbox
		recordFailure(t, d, key, 1, "x", true, at(1))
		recordFailure(t, d, key, 2, "x", true, at(2))
		if n := slices.Index(d.Outbox, key); n < 0 || slices.Index(d.Outbox[n+1:], key) >= 0 {
			t.Errorf("outbox = %v, want %s exactly once", d.Outbox, key)
		}
	})
	t.Run("max_retries 0: the first failure fails the agent", func(t *testing.T) {
		task := counciltest.Task()
		task.Constraints.MaxRetries = 0
		d := newDeliberation(t, task)
		send(d)
		if ok, err := d.RecordFailure(key, 1, "HTTP 503", true, at(1)); !ok || err != nil {
			t.Fatalf("RecordFailure = %v, %v", ok, err)
		}
		if !d.Failed(archi) || d.Work[key].State != council.WorkFailed || d.Work[key].Attempt != 1 || len(d.Outbox) != 0 {
			t.Errorf("failed %v, work %+v, outbox %v; want agent failed at attempt 1, nothing to send", d.Failed(archi), *d.Work[key], d.Outbox)
		}
	})
	t.Run("permanent failure with retries left fails the agent", func(t *testing.T) {
		d := newDeliberation(t, counciltest.Task())
		send(d)
		recordFailure(t, d, key, 1, "model not allowed", false, at(1))
		if !d.Failed(archi) || d.Failed(qa) {
			t.Errorf("Failed(architect) = %v, Failed(qa) = %v; want true, false", d.Failed(archi), d.Failed(qa))
		}
	})
	t.Run("empty proposal is a retryable failure", func(t *testing.T) {
		d := newDeliberation(t, counciltest.Task())
		send(d)
		p := prop(archi, 0)
		p.Content = " \n"
		if ok, err := d.RecordProposal(key, p, at(1)); !ok || err != nil {
			t.Fatalf("RecordProposal(empty) = %v, %v; want true, nil", ok, err)
		}
		w := d.Work[key]
		if w.State != council.WorkPending || w.Attempt != 2 || w.LastError != "empty proposal" || len(d.Proposals) != 0 {
			t.Errorf("work %+v, proposals %v; want pending attempt 2 with 'empty proposal' and nothing recorded", *w, d.Proposals)
		}
	})
}

func TestInvalidCritiqueIsARetryableFailure(t *testing.T) {
	missing := crit(qa, 0.5)
	delete(missing.Scores, "clarity")
	tests := []struct {
		name string
		c    council.Critique
		want string
	}{
		{"overall above 1", crit(qa, 1.5), "score overall=1.5 is outside [0,1]"},
		{"overall below 0", func() council.Critique { c := crit(qa, 0.5); c.Overall = -0.1; return c }(), "score overall=-0.1 is outside [0,1]"},
		{"criterion out of range", func() council.Critique { c := crit(qa, 0.5); c.Scores["clarity"] = 7; return c }(), "score clarity=7 is outside [0,1]"},
		{"missing criterion", missing, `score for criterion "clarity" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeliberation(t, counciltest.Task())
			for _, a := range []string{archi, qa, devops} {
				recordProposal(t, d, "p.0."+a, prop(a, 0), at(1))
			}
			send(d)
			key := council.CritiqueKey(0, archi, qa)
			ok, err := d.RecordCritique(key, tt.c, at(2))
			if !ok || err != nil {
				t.Fatalf("RecordCritique = %v, %v; want true, nil", ok, err)
			}
			w := d.Work[key]
			if w.State != council.WorkPending || w.Attempt != 2 || w.LastError != tt.want {
				t.Errorf("work %+v; want pending attempt 2 with LastError %q", *w, tt.want)
			}
			if _, ok := d.Critiques[key]; ok {
				t.Errorf("invalid critique was recorded")
			}
			if !slices.Contains(d.Outbox, key) {
				t.Errorf("outbox %v does not ask for %s again", d.Outbox, key)
			}
		})
	}
}

func TestResultsThatDoNotBelong(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	for _, a := range []string{archi, qa, devops} {
		recordProposal(t, d, "p.0."+a, prop(a, 0), at(1))
	}
	ck := council.CritiqueKey(0, archi, qa)
	tests := []struct {
		name string
		call func() (bool, error)
		want error
	}{
		{"proposal by the wrong agent", func() (bool, error) { return d.RecordProposal("p.1."+archi, prop(qa, 1), at(2)) }, council.ErrNotFound},
		{"proposal for another agent's key", func() (bool, error) { return d.RecordProposal("p.0."+archi, prop(qa, 0), at(2)) }, council.ErrInvalid},
		{"critique by the wrong reviewer", func() (bool, error) { return d.RecordCritique(ck, crit(devops, 0.5), at(2)) }, council.ErrInvalid},
		{"critique on a proposal key", func() (bool, error) { return d.RecordCritique("p.0."+qa, crit(qa, 0.5), at(2)) }, council.ErrInvalid},
		{"proposal on a critique key", func() (bool, error) { return d.RecordProposal(ck, prop(qa, 0), at(2)) }, council.ErrInvalid},
		{"unknown proposal key", func() (bool, error) { return d.RecordProposal("p.9."+archi, prop(archi, 9), at(2)) }, council.ErrNotFound},
		{"unknown critique key", func() (bool, error) { return d.RecordCritique("c.0.x.y", crit("y", 0.5), at(2)) }, council.ErrNotFound},
		{"unknown failure key", func() (bool, error) { return d.RecordFailure("p.0.nobody", 1, "x", true, at(2)) }, council.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := clone(t, d)
			ok, err := tt.call()
			if ok || !errors.Is(err, tt.want) {
				t.Errorf("got %v, %v; want false and an error wrapping %v", ok, err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "dlb-test") {
				t.Errorf("error %q does not name the deliberation", err)
			}
			if diff := cmp.Diff(before, d); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}
	if _, err := d.ProposalRequest(ck); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("ProposalRequest(critique key) error = %v, want ErrNotFound", err)
	}
	if _, err := d.CritiqueRequest("p.0." + qa); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("CritiqueRequest(proposal key) error = %v, want ErrNotFound", err)
	}
	if _, err := d.CritiqueRequest("c.0.nobody.none"); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("CritiqueRequest(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestTick(t *testing.T) {
	task := counciltest.Task()
	task.Constraints.Timeout = 60 * time.Second
	d := newDeliberation(t, task)
	recordProposal(t, d, "p.0."+archi, prop(archi, 0), at(1))
	for _, now := range []time.Time{at(0), at(59)} {
		if d.Tick(now) {
			t.Errorf("Tick(%v) before the deadline = true, want false", now)
		}
	}
	if d.Status != council.StatusRunning {
		t.Fatalf("status = %s before the deadline", d.Status)
	}
	if !d.Tick(at(61)) {
		t.Fatal("Tick after the deadline = false, want true")
	}
	if d.Status != council.StatusFailed || d.Phase != council.PhaseDone || !d.FinishedAt.Equal(at(61)) {
		t.Errorf("status %s phase %s finished %v; want failed, done, at(61)", d.Status, d.Phase, d.FinishedAt)
	}
	if want := "timeout: timeout_seconds=60 elapsed with 1 of 3 calls finished"; d.Reason != want {
		t.Errorf("reason = %q, want %q", d.Reason, want)
	}
	if diff := cmp.Diff([]string{council.OutboxFailed}, d.Outbox); diff != "" {
		t.Errorf("outbox after timeout (-want +got):\n%s", diff)
	}

	before := clone(t, d)
	if d.Tick(at(120)) {
		t.Error("second Tick = true, want false")
	}
	if ok, err := d.RecordProposal("p.0."+qa, prop(qa, 0), at(121)); ok || err != nil {
		t.Errorf("RecordProposal after the end = %v, %v; want false, nil", ok, err)
	}
	if ok, err := d.RecordCritique("p.0."+qa, crit(qa, 0.5), at(121)); ok || err != nil {
		t.Errorf("RecordCritique after the end = %v, %v; want false, nil", ok, err)
	}
	if ok, err := d.RecordFailure("p.0."+qa, 1, "late", true, at(121)); ok || err != nil {
		t.Errorf("RecordFailure after the end = %v, %v; want false, nil", ok, err)
	}
	if d.Resend(at(500), time.Second) {
		t.Error("Resend after the end = true, want false")
	}
	if diff := cmp.Diff(before, d); diff != "" {
		t.Errorf("results after the end changed the deliberation (-before +after):\n%s", diff)
	}
}

func TestTickAtTheDeadline(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	if !d.Tick(d.Deadline) {
		t.Error("Tick(deadline) = false, want true: the deadline is not part of the allowed time")
	}
}

func TestResend(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	send(d)
	recordProposal(t, d, "p.0."+archi, prop(archi, 0), at(5))
	if d.Resend(at(29), 30*time.Second) {
		t.Error("Resend before the pending work is stale = true, want false")
	}
	if !d.Resend(at(30), 30*time.Second) {
		t.Fatal("Resend of stale work = false, want true")
	}
	if diff := cmp.Diff([]string{"p.0." + devops, "p.0." + qa}, d.Outbox); diff != "" {
		t.Errorf("outbox after Resend (-want +got):\n%s", diff)
	}
	for _, a := range []string{devops, qa} {
		if w := d.Work["p.0."+a]; !w.RequestedAt.Equal(at(30)) || w.Attempt != 1 {
			t.Errorf("work %s requested at %v attempt %d; want at(30), attempt 1", w.Key, w.RequestedAt, w.Attempt)
		}
	}
	if d.Resend(at(90), 30*time.Second) {
		t.Error("Resend of work still in the outbox = true, want false")
	}
	send(d)
	if d.Resend(at(31), 30*time.Second) {
		t.Error("Resend of work just resent = true, want false")
	}
}

func TestFailAndCompleteAreIdempotent(t *testing.T) {
	t.Run("fail", func(t *testing.T) {
		d := newDeliberation(t, counciltest.Task())
		if !d.Fail("ray job FAILED: out of memory", at(3)) {
			t.Fatal("Fail = false, want true")
		}
		if d.Status != council.StatusFailed || d.Reason != "ray job FAILED: out of memory" || !d.FinishedAt.Equal(at(3)) {
			t.Errorf("status %s reason %q finished %v", d.Status, d.Reason, d.FinishedAt)
		}
		if diff := cmp.Diff([]string{council.OutboxFailed}, d.Outbox); diff != "" {
			t.Errorf("outbox (-want +got):\n%s", diff)
		}
		before := clone(t, d)
		if d.Fail("again", at(4)) || d.Complete(council.Result{Winner: "x"}, at(4)) || d.Tick(at(1000)) {
			t.Error("Fail/Complete/Tick after Fail reported a change")
		}
		if diff := cmp.Diff(before, d); diff != "" {
			t.Errorf("state changed (-before +after):\n%s", diff)
		}
	})
	t.Run("complete", func(t *testing.T) {
		task := counciltest.Task()
		task.Backend = council.BackendRay
		d := newDeliberation(t, task)
		r := council.Result{Winner: qa, Usage: usageP, Duration: time.Minute}
		if !d.Complete(r, at(60)) {
			t.Fatal("Complete = false, want true")
		}
		if d.Status != council.StatusCompleted || d.Phase != council.PhaseDone || !d.FinishedAt.Equal(at(60)) {
			t.Errorf("status %s phase %s finished %v", d.Status, d.Phase, d.FinishedAt)
		}
		if diff := cmp.Diff(&r, d.Result); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{council.OutboxCompleted}, d.Outbox); diff != "" {
			t.Errorf("outbox (-want +got):\n%s", diff)
		}
		before := clone(t, d)
		if d.Complete(council.Result{Winner: archi}, at(61)) || d.Fail("late", at(61)) {
			t.Error("Complete/Fail after Complete reported a change")
		}
		if diff := cmp.Diff(before, d); diff != "" {
			t.Errorf("state changed (-before +after):\n%s", diff)
		}
	})
}

func TestAcknowledge(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	if !d.Acknowledge("p.0." + qa) {
		t.Error("Acknowledge(queued key) = false, want true")
	}
	if diff := cmp.Diff([]string{"p.0." + archi, "p.0." + devops}, d.Outbox); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	if d.Acknowledge("p.0." + qa) {
		t.Error("Acknowledge twice = true, want false")
	}
	if d.Acknowledge(council.OutboxCompleted) {
		t.Error("Acknowledge(unknown) = true, want false")
	}
}

func TestAgent(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	if a, ok := d.Agent(qa); !ok || a.Role != "QA" {
		t.Errorf("Agent(qa) = %+v, %v; want the QA agent", a, ok)
	}
	if _, ok := d.Agent("nobody"); ok {
		t.Error("Agent(nobody) found an agent")
	}
}

func TestKeys(t *testing.T) {
	if got := council.ProposalKey(2, "a"); got != "p.2.a" {
		t.Errorf("ProposalKey = %q", got)
	}
	if got := council.CritiqueKey(1, "author", "reviewer"); got != "c.1.author.reviewer" {
		t.Errorf("CritiqueKey = %q", got)
	}
}

func TestTerminalStates(t *testing.T) {
	for s, want := range map[council.Status]bool{council.StatusRunning: false, council.StatusCompleted: true, council.StatusFailed: true} {
		if got := s.Terminal(); got != want {
			t.Errorf("Status(%s).Terminal() = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[council.JobState]bool{council.JobPending: false, council.JobRunning: false,
		council.JobStopped: true, council.JobSucceeded: true, council.JobFailed: true} {
		if got := s.Terminal(); got != want {
			t.Errorf("JobState(%s).Terminal() = %v, want %v", s, got, want)
		}
	}
}

func TestUsageAdd(t *testing.T) {
	got := usageP.Add(usageC)
	if want := (council.Usage{PromptTokens: 11, CompletionTokens: 22, TotalTokens: 33}); got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
}

func TestCheckDeliberationID(t *testing.T) {
	for _, id := range []string{council.DeliberationID("council.dev/orchestrator", "req-1"), "a", "A-b_9", strings.Repeat("x", 255)} {
		if err := council.CheckDeliberationID(id); err != nil {
			t.Errorf("CheckDeliberationID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "a.b", "a.*.>", "dlb/1", "dlb 1", "é", strings.Repeat("x", 256)} {
		if err := council.CheckDeliberationID(id); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("CheckDeliberationID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

// TestFailureAtTheDeadlineIsATimeout: generate and critique cut a call at
// the deliberation's deadline and reply a failure; one that arrives once
// the deadline has passed ends the deliberation as a timeout, not as the
// failure of its agent.
func TestFailureAtTheDeadlineIsATimeout(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	send(d)
	late := d.Deadline.Add(10 * time.Millisecond)
	ok, err := d.RecordFailure("p.0."+archi, 1, "deadline passed during the call", false, late)
	if !ok || err != nil {
		t.Fatalf("RecordFailure after the deadline = %v, %v; want true, nil", ok, err)
	}
	if d.Status != council.StatusFailed || !strings.Contains(d.Reason, "timeout") || len(d.Failures) != 0 {
		t.Errorf("status %s, reason %q, failures %v; want failed by timeout with no agent failure", d.Status, d.Reason, d.Failures)
	}
}
