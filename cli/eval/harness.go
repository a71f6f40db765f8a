package eval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"council.dev/shared/council"
)

// Config is one evaluation: which protocols, how large a council, and the
// token budget every protocol gets.
type Config struct {
	Protocols []council.Protocol
	// Agents is the size of the council (≥ 1).
	Agents int
	// Rounds is constraints.rounds (0: the domain's default).
	Rounds int
	// MaxTokens caps each completion (0: the domain's default).
	MaxTokens int
	// Budget is constraints.max_total_tokens of every deliberation, the
	// same for every protocol; 0 means none.
	Budget int
	// Model is the model every agent asks for ("" : the client's default).
	Model string
	// Timeout bounds one deliberation (0: the domain's default).
	Timeout time.Duration
	// Parallel is how many deliberations run at once (≤ 1: one at a time,
	// so that each makespan is measured alone).
	Parallel int
	// RunID makes the deliberation ids (and so the sampling seeds) of one
	// evaluation differ from another's; "" is fine.
	RunID string
}

// Runner runs evaluations.
type Runner struct {
	// LLM answers every call.
	LLM council.Completer
	// Sandbox scores the answers.
	Sandbox Sandbox
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is called with each outcome as it is known
	// (from several goroutines at once with Config.Parallel > 1).
	Progress func(Outcome)

	// cache keeps the verdicts of the programs checked, across runs.
	cache verdicts
}

// Outcome is the result of one problem under one protocol.
type Outcome struct {
	Protocol council.Protocol
	TaskID   string
	Passed   bool
	// Reason says why it did not pass: the sandbox's verdict, or the
	// deliberation's failure.
	Reason string
	// Status is the deliberation's end (completed, failed).
	Status council.Status
	// Stopped is council.ReasonBudgetExceeded when the budget ended the
	// rounds early (Result.Stopped) or failed the deliberation.
	Stopped string
	// FinalAgent wrote the answer that was scored.
	FinalAgent string
	Usage      council.Usage
	Calls      int
	Makespan   time.Duration
}

// Run evaluates every problem under every protocol of cfg and returns the
// outcomes, protocol by protocol in cfg's order, problems in the given
// order. A deliberation that fails is an outcome that did not pass; the
// error is for a bad configuration, ctx ending, or a sandbox that cannot
// run.
func (r *Runner) Run(ctx context.Context, problems []Problem, cfg Config) ([]Outcome, error) {
	if len(cfg.Protocols) == 0 || len(problems) == 0 {
		return nil, errors.New("eval: run: no protocol or no problem")
	}
	out := make([]Outcome, 0, len(cfg.Protocols)*len(problems))
	for _, proto := range cfg.Protocols {
		res := make([]Outcome, len(problems))
		errs := make([]error, len(problems))
		sem := make(chan struct{}, max(cfg.Parallel, 1))
		var wg sync.WaitGroup
		for i, p := range problems {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				res[i], errs[i] = r.one(ctx, p, proto, cfg)
				if errs[i] == nil && r.Progress != nil {
					r.Progress(res[i])
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// one runs problem p under protocol proto and scores its final answer.
func (r *Runner) one(ctx context.Context, p Problem, proto council.Protocol, cfg Config) (Outcome, error) {
	o := Outcome{Protocol: proto, TaskID: p.TaskID}
	task, err := TaskFor(p, proto, cfg)
	if err != nil {
		return o, err
	}
	now := r.clock()
	d, err := council.New(deliberationID(cfg.RunID, proto, p.TaskID), task, now())
	if err != nil {
		return o, fmt.Errorf("eval: %s %s: %w", proto, p.TaskID, err)
	}
	llm := &counter{llm: r.LLM}
	start := now()
	if err := (&council.Engine{LLM: llm, Now: r.Now}).Run(ctx, d); err != nil {
		return o, fmt.Errorf("eval: %s %s: %w", proto, p.TaskID, err)
	}
	o.Makespan = now().Sub(start)
	o.Usage, o.Calls = llm.totals()
	o.Status = d.Status
	if d.Status != council.StatusCompleted || d.Result == nil {
		o.Reason = "deliberation " + string(d.Status) + ": " + d.Reason
		if strings.HasPrefix(d.Reason, council.ReasonBudgetExceeded) {
			// The budget could not pay for the protocol's first round.
			o.Stopped = council.ReasonBudgetExceeded
		}
		return o, nil
	}
	o.Stopped = d.Result.Stopped
	agent, answer, ok := FinalAnswer(d.Result)
	if !ok {
		o.Reason = "no final answer"
		return o, nil
	}
	o.FinalAgent = agent
	v, err := r.cache.check(ctx, r.Sandbox, p, Program(p, answer))
	if err != nil {
		return o, err
	}
	o.Passed, o.Reason = v.Passed, v.Reason
	return o, nil
}

func (r *Runner) clock() func() time.Time {
	if r.Now == nil {
		return time.Now
	}
	return r.Now
}

// FinalAnswer is the answer a deliberation gives, and its author: the
// judge's (Result.Final: protocol judge, or synthesize) when there is one,
// else the winner's final proposal — for vote and debate the domain makes
// the first agent of the plurality answer the winner, and the review's
// winner when no answer has a plurality. ok is false when the result
// holds none.
func FinalAnswer(r *council.Result) (agent, content string, ok bool) {
	if r.Final != nil {
		return r.Final.AgentID, r.Final.Content, true
	}
	if c, ok := finalProposal(r, r.Winner); ok {
		return r.Winner, c, true
	}
	return "", "", false
}

// finalProposal is the ranked (final) proposal of agent.
func finalProposal(r *council.Result, agent string) (string, bool) {
	for _, rk := range r.Ranking {
		if rk.Proposal.AgentID == agent {
			return rk.Proposal.Content, true
		}
	}
	return "", false
}

// roles give the agents different perspectives, in turn.
var roles = []string{"DEV", "QA", "ARCHITECT", "DEVOPS", "DATA"}

// TaskFor is the council task of problem p under protocol proto: a
// deliberation (kind deliberation; the plan and story name the problem)
// asking for the completed function in one fenced code block. The first
// agent is the judge where the protocol has one.
func TaskFor(p Problem, proto council.Protocol, cfg Config) (council.Task, error) {
	if cfg.Agents < 1 {
		return council.Task{}, fmt.Errorf("eval: %d agents: want 1 or more", cfg.Agents)
	}
	agents := make([]council.Agent, cfg.Agents)
	for i := range agents {
		agents[i] = council.Agent{ID: fmt.Sprintf("agent-%d", i+1), Role: roles[i%len(roles)]}
	}
	c := council.Constraints{
		PlanID: "humaneval", StoryID: idPart(p.TaskID),
		Rounds: cfg.Rounds, MaxTokens: cfg.MaxTokens, MaxTotalTokens: cfg.Budget, Timeout: cfg.Timeout,
		MaxRetries: 1, Protocol: proto,
	}
	if proto == council.ProtocolJudge {
		c.Judge = agents[0].ID
	}
	return council.Task{
		ID:          p.TaskID,
		Description: Description(p),
		Role:        "DEV",
		Kind:        council.KindDeliberation,
		Constraints: c,
		Agents:      agents,
		Model:       cfg.Model,
		// The default backend (functions) issues the first work at New;
		// with backend ray, New leaves that to the Ray job's own copy.
	}, nil
}

// Description is the task put to the council for p.
func Description(p Problem) string {
	return "Complete this Python function. Answer with the whole function, its imports included, " +
		"in one ```python code block; it must pass hidden unit tests.\n\n```python\n" + p.Prompt + "```\n"
}

// deliberationID is a valid deliberation id for run, protocol and task.
func deliberationID(run string, proto council.Protocol, taskID string) string {
	parts := []string{"eval"}
	if run != "" {
		parts = append(parts, idPart(run))
	}
	return strings.Join(append(parts, string(proto), idPart(taskID)), "-")
}

// idPart replaces what an id may not hold ("HumanEval/0" → "HumanEval_0").
func idPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// counter counts the calls and tokens of one deliberation.
type counter struct {
	llm   council.Completer
	mu    sync.Mutex
	usage council.Usage
	calls int
}

func (c *counter) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	out, err := c.llm.Complete(ctx, req)
	c.mu.Lock()
	c.calls++
	c.usage = c.usage.Add(out.Usage)
	c.mu.Unlock()
	return out, err
}

func (c *counter) totals() (council.Usage, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usage, c.calls
}

// verdicts remembers the sandbox's verdict of each program: protocols
// often end on the same answer, and a run costs a Python start. The zero
// value is ready to use.
type verdicts struct {
	mu sync.Mutex
	m  map[string]Verdict
}

func (v *verdicts) check(ctx context.Context, s Sandbox, p Problem, program string) (Verdict, error) {
	key := p.TaskID + "\x00" + program
	v.mu.Lock()
	got, ok := v.m[key]
	v.mu.Unlock()
	if ok {
		return got, nil
	}
	got, err := s.Check(ctx, p, program)
	if err != nil {
		return Verdict{}, err
	}
	v.mu.Lock()
	if v.m == nil {
		v.m = map[string]Verdict{}
	}
	v.m[key] = got
	v.mu.Unlock()
	return got, nil
}
