package natsjs_test

import (
	"slices"
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// withProtocolFixtures adds to fixtures the states of the protocols of
// issue 11: "protocols", a debate that stopped when stable, then a judge's
// synthesis (votes, the final answer, the judge's j.<stage>.<judge> work);
// "judging", a judge protocol waiting for the judge's work.
func withProtocolFixtures(t *testing.T, mk func(string, func(*council.Task)) *council.Deliberation,
	fixtures map[string]*council.Deliberation) map[string]*council.Deliberation {
	t.Helper()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	qa := counciltest.Task().Agents[1].ID
	protocols := mk("dlb-state-protocols", func(task *council.Task) {
		c := &task.Constraints
		c.Protocol, c.Rounds, c.StopWhenStable, c.Synthesize, c.Judge = council.ProtocolDebate, 3, true, true, qa
	})
	// Every agent answers "token bucket": the vote is the same after round
	// 1 as before it, so the rounds stop there and the judge synthesizes.
	for !protocols.Status.Terminal() {
		keys := slices.Clone(protocols.Outbox)
		if len(keys) == 0 {
			t.Fatalf("protocols fixture waits in stage %d %s", protocols.Stage, protocols.Phase)
		}
		for _, k := range keys {
			protocols.Acknowledge(k)
			w := protocols.Work[k]
			p := counciltest.ProposalFor(*w)
			p.Content += "Answer: token bucket\n"
			if _, err := protocols.RecordProposal(k, p, t0.Add(3*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := protocols.Result; r == nil || r.Final == nil || len(r.Votes) == 0 || r.RoundsRun != 1 {
		t.Fatalf("protocols fixture: result %+v, want votes, a final answer and an early stop", r)
	}
	judging := mk("dlb-state-judging", func(task *council.Task) {
		task.Constraints.Protocol, task.Constraints.Judge = council.ProtocolJudge, qa
	})
	for _, k := range slices.Clone(judging.Outbox) {
		judging.Acknowledge(k)
		if _, err := judging.RecordProposal(k, counciltest.ProposalFor(*judging.Work[k]), t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if judging.Phase != council.PhaseJudging {
		t.Fatalf("judging fixture in phase %s, want %s", judging.Phase, council.PhaseJudging)
	}
	fixtures["protocols"], fixtures["judging"] = protocols, judging
	return fixtures
}
