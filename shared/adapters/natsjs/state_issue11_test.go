package natsjs_test

import (
	"fmt"
	"slices"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// writtenBeforeIssue11 is d as state written before issue 11 decodes: no
// protocol, aggregation or final review in the task (the defaults of that
// time: critique_revise, the mean, the ring) and none in the result.
func writtenBeforeIssue11(d *council.Deliberation) *council.Deliberation {
	d = d.Clone()
	c := &d.Task.Constraints
	c.Protocol, c.Aggregation, c.FinalReview = "", "", ""
	if r := d.Result; r != nil {
		r.Protocol, r.RoundsRun, r.Aggregation = "", 0, ""
	}
	return d
}

// finishConfident answers d's work until it ends; each critique states a
// confidence and scores the author by its place in the task's agents
// (with a reviewer-dependent twist), so that the rankings differ.
func finishConfident(d *council.Deliberation, now time.Time) error {
	order := map[string]int{}
	for i, a := range d.Task.Agents {
		order[a.ID] = i
	}
	for !d.Status.Terminal() {
		keys := slices.Clone(d.Outbox)
		if len(keys) == 0 {
			return fmt.Errorf("deliberation %s waits with nothing to send", d.ID)
		}
		for _, k := range keys {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			if w.Kind == council.WorkProposal {
				_, err = d.RecordProposal(k, counciltest.ProposalFor(*w), now)
			} else {
				c := counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric)
				c.Overall = float64(9-order[w.AuthorID]*2-order[w.AgentID]%2) / 10
				confidence := float64(5+order[w.AgentID]) / 10
				c.Confidence = &confidence
				_, err = d.RecordCritique(k, c, now)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
