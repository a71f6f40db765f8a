package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"council.dev/shared/council"
)

// Row sums up one protocol's outcomes.
type Row struct {
	Protocol council.Protocol `json:"protocol"`
	Tasks    int              `json:"tasks"`
	Passed   int              `json:"passed"`
	// Quality is pass@1 of the final answers: Passed / Tasks.
	Quality          float64 `json:"quality"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	CachedTokens     int     `json:"cached_tokens"`
	Calls            int     `json:"calls"`
	// MakespanMean and MakespanP50 are over the deliberations, in seconds.
	MakespanMean float64 `json:"makespan_mean_s"`
	MakespanP50  float64 `json:"makespan_p50_s"`
	// BudgetStops counts the deliberations the budget ended early or
	// failed (those are in Failed too).
	BudgetStops int `json:"budget_stops"`
	// Failed counts the deliberations that failed (no answer scored).
	Failed int `json:"failed"`
}

// Summarize groups outcomes by protocol, in the order they first appear.
func Summarize(outcomes []Outcome) []Row {
	var rows []Row
	spans := map[council.Protocol][]time.Duration{}
	at := map[council.Protocol]int{}
	for _, o := range outcomes {
		i, ok := at[o.Protocol]
		if !ok {
			i = len(rows)
			at[o.Protocol] = i
			rows = append(rows, Row{Protocol: o.Protocol})
		}
		r := &rows[i]
		r.Tasks++
		if o.Passed {
			r.Passed++
		}
		r.PromptTokens += o.Usage.PromptTokens
		r.CompletionTokens += o.Usage.CompletionTokens
		r.CachedTokens += o.Usage.CachedTokens
		r.Calls += o.Calls
		if o.Stopped == council.ReasonBudgetExceeded {
			r.BudgetStops++
		}
		if o.Status != council.StatusCompleted {
			r.Failed++
		}
		spans[o.Protocol] = append(spans[o.Protocol], o.Makespan)
	}
	for i := range rows {
		r := &rows[i]
		r.Quality = float64(r.Passed) / float64(r.Tasks)
		s := spans[r.Protocol]
		slices.Sort(s)
		var sum time.Duration
		for _, d := range s {
			sum += d
		}
		r.MakespanMean = (sum / time.Duration(len(s))).Seconds()
		r.MakespanP50 = median(s).Seconds()
	}
	return rows
}

// median of sorted durations.
func median(s []time.Duration) time.Duration {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteTable prints rows as an aligned table, with the budget they ran under.
func WriteTable(w io.Writer, rows []Row, cfg Config) error {
	budget := "none"
	if cfg.Budget > 0 {
		budget = fmt.Sprintf("%d tokens per deliberation", cfg.Budget)
	}
	if _, err := fmt.Fprintf(w, "agents %d, rounds %d, max tokens %d, budget %s\n\n",
		cfg.Agents, cfg.Rounds, cfg.MaxTokens, budget); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\ttasks\tpassed\tquality\tprompt tok\tcompl tok\tcached tok\tcalls\tmakespan mean\tp50\tbudget stops\tfailed\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%d\t%d\t%d\t%d\t%.1fs\t%.1fs\t%d\t%d\t\n",
			r.Protocol, r.Tasks, r.Passed, r.Quality, r.PromptTokens, r.CompletionTokens, r.CachedTokens,
			r.Calls, r.MakespanMean, r.MakespanP50, r.BudgetStops, r.Failed)
	}
	return tw.Flush()
}

// Report is the JSON form of an evaluation: the configuration, a row per
// protocol, and every outcome.
type Report struct {
	Agents    int          `json:"agents"`
	Rounds    int          `json:"rounds"`
	MaxTokens int          `json:"max_tokens"`
	Budget    int          `json:"budget"`
	Model     string       `json:"model,omitempty"`
	Rows      []Row        `json:"rows"`
	Outcomes  []outcomeDoc `json:"outcomes"`
}

type outcomeDoc struct {
	Protocol         council.Protocol `json:"protocol"`
	TaskID           string           `json:"task_id"`
	Passed           bool             `json:"passed"`
	Reason           string           `json:"reason,omitempty"`
	Status           council.Status   `json:"status"`
	Stopped          string           `json:"stopped,omitempty"`
	FinalAgent       string           `json:"final_agent,omitempty"`
	PromptTokens     int              `json:"prompt_tokens"`
	CompletionTokens int              `json:"completion_tokens"`
	CachedTokens     int              `json:"cached_tokens"`
	Calls            int              `json:"calls"`
	MakespanSeconds  float64          `json:"makespan_s"`
}

// WriteJSON prints the report as one JSON document.
func WriteJSON(w io.Writer, outcomes []Outcome, cfg Config) error {
	rep := Report{Agents: cfg.Agents, Rounds: cfg.Rounds, MaxTokens: cfg.MaxTokens, Budget: cfg.Budget, Model: cfg.Model,
		Rows: Summarize(outcomes)}
	for _, o := range outcomes {
		rep.Outcomes = append(rep.Outcomes, outcomeDoc{
			Protocol: o.Protocol, TaskID: o.TaskID, Passed: o.Passed, Reason: o.Reason, Status: o.Status,
			Stopped: o.Stopped, FinalAgent: o.FinalAgent, PromptTokens: o.Usage.PromptTokens,
			CompletionTokens: o.Usage.CompletionTokens, CachedTokens: o.Usage.CachedTokens, Calls: o.Calls,
			MakespanSeconds: o.Makespan.Seconds(),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
