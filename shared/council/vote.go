package council

import (
	"regexp"
	"slices"
	"strings"
)

// Vote is one distinct extracted answer of a stage and the agents that
// gave it (protocols vote and debate).
type Vote struct {
	Answer string
	Count  int
	// Agents gave the answer, in task order.
	Agents []string
}

var (
	answerLine = regexp.MustCompile(`(?i)^\s*(?:final\s+answer|answer)\s*:\s*(.+?)\s*$`)
	fence      = regexp.MustCompile("(?s)```[^\n`]*\n(.*?)```")
)

// ExtractAnswer is the answer a vote counts in content: the last line of
// the form "Answer: X" or "Final answer: X" (any case), else the last
// fenced code block, else the whole text. Whitespace runs become one
// space, and the text is lowercased except code, where case matters.
func ExtractAnswer(content string) string {
	lines := strings.Split(content, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if m := answerLine.FindStringSubmatch(lines[i]); m != nil {
			return strings.ToLower(collapse(m[1]))
		}
	}
	if blocks := fence.FindAllStringSubmatch(content, -1); len(blocks) > 0 {
		return collapse(blocks[len(blocks)-1][1])
	}
	return strings.ToLower(collapse(content))
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// votes tallies the extracted answers of the surviving agents at stage:
// most votes first, ties in the order the answers first appear (task
// order).
func (d *Deliberation) votes(stage int) []Vote {
	var out []Vote
	at := map[string]int{}
	for _, p := range d.answersAt(stage, "") {
		a := ExtractAnswer(p.Content)
		i, ok := at[a]
		if !ok {
			i = len(out)
			at[a] = i
			out = append(out, Vote{Answer: a})
		}
		out[i].Count++
		out[i].Agents = append(out[i].Agents, p.AgentID)
	}
	// Insertion sort: stable, and the tally is small.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Count > out[j-1].Count; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// plurality returns the answer of stage that wins the vote: the one most
// agents gave, when at least two gave it and no other answer has as many.
func (d *Deliberation) plurality(stage int) (string, bool) {
	v := d.votes(stage)
	if len(v) == 0 || v[0].Count < 2 || (len(v) > 1 && v[1].Count == v[0].Count) {
		return "", false
	}
	return v[0].Answer, true
}

// cloneVotes deep-copies vs (nil stays nil).
func cloneVotes(vs []Vote) []Vote {
	if vs == nil {
		return nil
	}
	out := make([]Vote, len(vs))
	for i, v := range vs {
		v.Agents = slices.Clone(v.Agents)
		out[i] = v
	}
	return out
}
