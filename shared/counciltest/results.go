package counciltest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"council.dev/shared/council"
)

// ProposalFor is a cooperative agent's answer to proposal work w: about
// 1.4 KB of text, as a small model writes under the default token budget.
func ProposalFor(w council.Work) council.Proposal {
	var b strings.Builder
	fmt.Fprintf(&b, "Proposal of %s at stage %d.\n", w.AgentID, w.Stage)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "%d. Keep a token bucket per API key in the shared store and update it with "+
			"compare-and-set, so that every replica sees the same budget; refill it lazily from the "+
			"last update time and answer 429 with Retry-After when it is empty.\n", i)
	}
	return council.Proposal{
		AgentID: w.AgentID, Stage: w.Stage, Content: b.String(), Model: "council-tiny",
		Usage:    council.Usage{PromptTokens: 412, CompletionTokens: 230, TotalTokens: 642},
		Duration: 2150 * time.Millisecond, Attempt: w.Attempt,
	}
}

// CritiqueFor is a cooperative reviewer's answer to critique work w: every
// criterion of rubric scored 0.7, with a few remarks.
func CritiqueFor(w council.Work, rubric []string) council.Critique {
	scores := make(map[string]float64, len(rubric))
	for _, r := range rubric {
		scores[r] = 0.7
	}
	return council.Critique{
		ReviewerID: w.AgentID, AuthorID: w.AuthorID, Stage: w.Stage, Scores: scores, Overall: 0.7,
		Strengths:   []string{"Compare-and-set keeps replicas consistent without a lock service."},
		Issues:      []string{"Nothing says what happens when the store is unreachable: fail open or closed?"},
		Suggestions: []string{"Fail open for reads, closed for writes, and say so in the runbook."},
		Model:       "council-tiny",
		Usage:       council.Usage{PromptTokens: 980, CompletionTokens: 120, TotalTokens: 1100},
		Duration:    1400 * time.Millisecond, Attempt: w.Attempt,
	}
}

// Finish plays cooperative generate and critique functions: wave after
// wave it acknowledges the outbox of d and answers every piece of work with
// ProposalFor or CritiqueFor, recorded at now, until d ends. It returns an
// error when d rejects a result or stops asking for work without ending.
func Finish(d *council.Deliberation, now time.Time) error {
	return FinishScoring(d, now, nil)
}

// FinishScoring is Finish with the overall score of each critique given by
// overall (nil: CritiqueFor's), so that a test can shape a final review.
func FinishScoring(d *council.Deliberation, now time.Time, overall func(council.Work) float64) error {
	for !d.Status.Terminal() {
		keys := slices.Clone(d.Outbox)
		if len(keys) == 0 {
			return fmt.Errorf("counciltest: deliberation %s waits in stage %d %s with nothing to send", d.ID, d.Stage, d.Phase)
		}
		for _, k := range keys {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			switch w.Kind {
			case council.WorkProposal:
				_, err = d.RecordProposal(k, ProposalFor(*w), now)
			case council.WorkCritique:
				c := CritiqueFor(*w, d.Task.Constraints.Rubric)
				if overall != nil {
					c.Overall = overall(*w)
				}
				_, err = d.RecordCritique(k, c, now)
			}
			if err != nil {
				return fmt.Errorf("counciltest: finish %s: %w", d.ID, err)
			}
		}
	}
	return nil
}
