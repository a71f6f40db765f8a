package council

import (
	"slices"
	"strings"
)

// PromptCache measures how much of a deliberation's prompts an LLM
// server's prefix cache can serve.
type PromptCache struct {
	// CachedTokenShare is the share of prompt tokens the server reported
	// as cached: the sum of Usage.CachedTokens over the sum of
	// Usage.PromptTokens of every answered call (0 when none reported
	// prompt tokens).
	CachedTokenShare float64
	// SharedPrefixShare is the share of prompt bytes in a prefix shared
	// with an earlier call of the deliberation: for each answered call, in
	// the order the calls were requested, the longest common prefix in
	// bytes of its rendered prompt (RenderPrompt of the messages generate
	// or critique sent) with the prompt of any earlier call, summed over
	// the calls and divided by the bytes of all their prompts. It bounds
	// what a prefix cache that keeps every prompt could serve.
	SharedPrefixShare float64
	// PromptBytes and SharedPrefixBytes are that share's terms; Unmeasured
	// counts answered calls whose prompt could not be rebuilt from the
	// state (not in either term).
	PromptBytes, SharedPrefixBytes int64
	Unmeasured                     int
}

// RenderPrompt is the text of messages as the prefix measure counts it:
// each message's role, a newline, its content and a newline, in order. A
// server's chat template adds its own markers around the same texts in the
// same order, so prefixes shared here are shared there too.
func RenderPrompt(msgs []Message) string {
	n := 0
	for _, m := range msgs {
		n += len(m.Role) + len(m.Content) + 2
	}
	var b strings.Builder
	b.Grow(n)
	for _, m := range msgs {
		b.WriteString(m.Role)
		b.WriteByte('\n')
		b.WriteString(m.Content)
		b.WriteByte('\n')
	}
	return b.String()
}

// promptCache measures d's answered calls (see PromptCache); usage is the
// sum of their usage. Pure: the prompts are rebuilt from the state with
// the builders generate and critique use.
func (d *Deliberation) promptCache(usage Usage) PromptCache {
	var pc PromptCache
	if usage.PromptTokens > 0 {
		pc.CachedTokenShare = float64(usage.CachedTokens) / float64(usage.PromptTokens)
	}
	// The answered calls in the order they were requested (the work's last
	// request; the key breaks ties).
	calls := make([]*Work, 0, len(d.Proposals)+len(d.Critiques))
	for k := range d.Proposals {
		if w, ok := d.Work[k]; ok {
			calls = append(calls, w)
		} else {
			pc.Unmeasured++
		}
	}
	for k := range d.Critiques {
		if w, ok := d.Work[k]; ok {
			calls = append(calls, w)
		} else {
			pc.Unmeasured++
		}
	}
	slices.SortFunc(calls, func(a, b *Work) int {
		if c := a.RequestedAt.Compare(b.RequestedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	// Every prompt is the system message of the deliberation's task
	// (systemPrompt reads only what Task.For keeps) and then the call's
	// user message, so two prompts share the head below and then what
	// their user messages share. The longest common prefix of a user
	// message with any of a set is its longest with one of its two
	// neighbours in the set's sorted order: a sorted slice of the earlier
	// ones keeps the measure at O(n log n) comparisons of short texts.
	head := len(RenderPrompt([]Message{{Role: "system", Content: systemPrompt(d.Task)}})) + len("user\n")
	type stageAgent struct {
		stage int
		agent string
	}
	byAuthor := map[stageAgent][]Critique{} // critiquesOf, indexed once
	proposals := make(map[stageAgent]Proposal, len(d.Proposals))
	for _, k := range sortedKeys(d.Critiques) {
		c := d.Critiques[k]
		byAuthor[stageAgent{c.Stage, c.AuthorID}] = append(byAuthor[stageAgent{c.Stage, c.AuthorID}], c)
	}
	for _, p := range d.Proposals {
		proposals[stageAgent{p.Stage, p.AgentID}] = p
	}
	var earlier []string
	for _, w := range calls {
		a, ok := d.Agent(w.AgentID)
		if !ok {
			pc.Unmeasured++
			continue
		}
		var user string
		if w.Kind == WorkProposal {
			r := ProposalRequest{Task: d.Task, Agent: a, Stage: w.Stage}
			if w.Stage > 0 {
				if p, ok := proposals[stageAgent{w.Stage - 1, a.ID}]; ok {
					r.Previous = &p
				}
				r.Critiques = byAuthor[stageAgent{w.Stage - 1, a.ID}]
				r.Feedback = d.FeedbackFor(w.Stage)
			}
			user = proposalUser(r) + "\n"
		} else {
			user = critiqueUser(CritiqueRequest{Task: d.Task, Reviewer: a, Proposal: proposals[stageAgent{w.Stage, w.AuthorID}]}) + "\n"
		}
		i, found := slices.BinarySearch(earlier, user)
		shared := 0
		switch {
		case found:
			shared = head + len(user)
		case len(earlier) > 0:
			lcp := 0
			if i > 0 {
				lcp = commonPrefix(earlier[i-1], user)
			}
			if i < len(earlier) {
				lcp = max(lcp, commonPrefix(earlier[i], user))
			}
			shared = head + lcp
		}
		earlier = slices.Insert(earlier, i, user)
		pc.PromptBytes += int64(head + len(user))
		pc.SharedPrefixBytes += int64(shared)
	}
	if pc.PromptBytes > 0 {
		pc.SharedPrefixShare = float64(pc.SharedPrefixBytes) / float64(pc.PromptBytes)
	}
	return pc
}

// commonPrefix is the length in bytes of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	// Eight bytes at a time while they agree, then byte by byte.
	for i+8 <= n && a[i:i+8] == b[i:i+8] {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}
