package council

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PhaseJudging is the judge stage: the judge agent (constraints.judge)
// synthesizes the final answer from the answers of the last stage
// (protocol judge, or constraints.synthesize).
const PhaseJudging Phase = "judging"

// Final is the judge's final answer.
type Final struct {
	AgentID string
	Content string
	// Picked is the label of the answer the judge took as it was
	// ("Answer B"), empty when it wrote its own synthesis.
	Picked string
	Usage  Usage
}

// JudgeKey names the judge's work on the answers of stage.
func JudgeKey(stage int, judge string) string { return fmt.Sprintf("j.%d.%s", stage, judge) }

// IsJudgeKey reports whether key names a judge's work (JudgeKey).
func IsJudgeKey(key string) bool { return strings.HasPrefix(key, "j.") }

// startJudge starts the judge stage on the answers of the current stage
// when the task asks for one and it has not run on them: it reports
// whether it did. A stage a budget stopped is not judged (the judge is one
// more call); nor one whose judge call the budget cannot pay for.
func (d *Deliberation) startJudge(now time.Time, stopped string) bool {
	c := d.Task.Constraints
	if (d.protocol() != ProtocolJudge && !c.Synthesize) || c.Judge == "" || stopped != "" || d.Task.Kind.SinglePass() {
		return false
	}
	key := JudgeKey(d.Stage, c.Judge)
	if _, done := d.Work[key]; done {
		return false
	}
	judge, ok := d.Agent(c.Judge)
	if !ok {
		return false
	}
	r := ProposalRequest{DeliberationID: d.ID, Task: d.Task.For(judge), Agent: judge, Stage: d.Stage, Mode: ModeSynthesize,
		Candidates: anonymize(d.ID, judge.ID, d.Stage, d.answersAt(d.Stage, ""))}
	if ok, _ := d.affords(1, EstimateTokens(ProposalMessages(r))); !ok {
		return false
	}
	d.addWork(&Work{Key: key, Kind: WorkProposal, Stage: d.Stage, AgentID: judge.ID}, now)
	d.Phase = PhaseJudging
	return true
}

var pickedLine = regexp.MustCompile(`(?i)^\s*picked\s*:\s*(answer\s+[a-z]+)\s*$`)

// final returns the judge's answer on the last stage, if it gave one.
func (d *Deliberation) final() (Final, bool) {
	p, ok := d.Proposals[JudgeKey(d.Stage, d.Task.Constraints.Judge)]
	if !ok || d.Task.Constraints.Judge == "" {
		return Final{}, false
	}
	f := Final{AgentID: p.AgentID, Content: p.Content, Usage: p.Usage}
	first, _, _ := strings.Cut(strings.TrimSpace(p.Content), "\n")
	if m := pickedLine.FindStringSubmatch(first); m != nil {
		f.Picked = "Answer " + strings.ToUpper(strings.TrimSpace(strings.TrimPrefix(strings.ToLower(m[1]), "answer")))
	}
	return f, true
}

// judgeUser is the user message of the judge's request: every answer,
// anonymized, and the instruction to write the final one.
func judgeUser(u *strings.Builder, r ProposalRequest) {
	fmt.Fprintf(u, "You chair the council. %s agents answered the task independently; their answers follow, "+
		"anonymized and in no particular order. Write the single best final answer to the task: keep what is correct "+
		"in each, resolve their disagreements, fix their mistakes. If one answer is already the best as it stands, "+
		"start your reply with the line \"Picked: <its label>\" and then give that answer.\n",
		strconv.Itoa(len(r.Candidates)))
	writeCandidates(u, r.Candidates)
}

// writeCandidates writes the anonymized answers under their labels.
func writeCandidates(u *strings.Builder, cs []Candidate) {
	for _, c := range cs {
		fmt.Fprintf(u, "\n%s:\n%s\n", c.Label, c.Content)
	}
}
