package council

import (
	"fmt"
	"strings"
)

// answerInstruction asks for a final answer a vote can extract
// (ExtractAnswer).
const answerInstruction = "If the task has a short final answer, end with a line \"Answer: <the answer>\"; " +
	"if it asks for code, give the complete code in one fenced code block.\n"

// debateUser is the user message of a debate round (Du et al. 2023): the
// agent's own latest answer and the other agents' answers, anonymized;
// no critiques.
func debateUser(u *strings.Builder, r ProposalRequest) {
	u.WriteString("These are the latest answers of the other agents to the task, anonymized and in no particular order. " +
		"Using their reasoning as additional advice, examine your own answer and theirs, then write your updated, complete answer.\n")
	writeCandidates(u, r.Candidates)
	if r.Previous != nil {
		fmt.Fprintf(u, "\nYour answer (round %d):\n%s\n", r.Previous.Stage, r.Previous.Content)
	}
	u.WriteString("\n" + answerInstruction)
	writeFeedback(u, r.Feedback)
}

// writeFeedback adds the human reviewer's feedback a round addresses (a
// round the review gate asked for), if any.
func writeFeedback(u *strings.Builder, feedback string) {
	if feedback != "" {
		fmt.Fprintf(u, "\nA human reviewer read the ranked proposals and asks every revision to address this feedback:\n%s\n", feedback)
	}
}
