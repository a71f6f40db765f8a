package events

import (
	"encoding/json"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Summary holds the fields the council events share, read leniently from
// any of them for display (council watch): what an event does not carry is
// left zero, and data that does not decode gives an empty Summary. It is
// not a validation: the Decode functions are.
type Summary struct {
	DeliberationID string           `json:"deliberation_id"`
	Key            string           `json:"key"`
	Attempt        int              `json:"attempt"`
	Stage          int              `json:"stage"`
	Error          string           `json:"error"`
	Retryable      bool             `json:"retryable"`
	AgentID        string           `json:"agent_id"`
	ReviewerID     string           `json:"reviewer_id"`
	Status         string           `json:"status"`
	Backend        string           `json:"backend"`
	Reason         string           `json:"reason"`
	Proposal       *ProposalSummary `json:"proposal"`
	Critique       *CritiqueSummary `json:"critique"`
	Agent          *Agent           `json:"agent"`
	Reviewer       *Agent           `json:"reviewer"`
}

// ProposalSummary is what Summary keeps of a proposal.
type ProposalSummary struct {
	AgentID    string `json:"agent_id"`
	Usage      Usage  `json:"usage"`
	DurationMS int64  `json:"duration_ms"`
}

// CritiqueSummary is what Summary keeps of a critique.
type CritiqueSummary struct {
	ReviewerID string  `json:"reviewer_id"`
	AuthorID   string  `json:"author_id"`
	Overall    float64 `json:"overall"`
	DurationMS int64   `json:"duration_ms"`
}

// Summarize reads the Summary of e.
func Summarize(e event.Event) Summary {
	var s Summary
	if json.Unmarshal(e.Data(), &s) != nil {
		return Summary{}
	}
	return s
}
