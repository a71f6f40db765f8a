package council

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Status is where a deliberation stands.
type Status string

// Deliberation statuses.
const (
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	// StatusCancelled ends a deliberation that a cancel event stopped
	// (Deliberation.Cancel).
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether the status is final.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Phase is the step inside a stage.
type Phase string

// Phases of a stage: every surviving agent proposes (stage 0) or revises
// (stage ≥ 1), then peers critique the proposals.
const (
	PhaseProposing  Phase = "proposing"
	PhaseCritiquing Phase = "critiquing"
	PhaseDone       Phase = "done"
	// PhaseAwaitingReview is the human gate (constraints.review
	// before_final): the critique rounds are done, the ranked candidates
	// are out, and the deliberation waits for a decision (Decide).
	PhaseAwaitingReview Phase = "awaiting_review"
)

// WorkKind says what a piece of work asks for.
type WorkKind string

// Work kinds.
const (
	WorkProposal WorkKind = "proposal"
	WorkCritique WorkKind = "critique"
)

// WorkState is the state of one piece of work.
type WorkState string

// Work states.
const (
	WorkPending WorkState = "pending"
	WorkDone    WorkState = "done"
	WorkFailed  WorkState = "failed"
)

// Work is one LLM call the deliberation waits for: a proposal (or revision)
// by AgentID, or a critique by AgentID of AuthorID's proposal.
type Work struct {
	Key         string
	Kind        WorkKind
	Stage       int
	AgentID     string
	AuthorID    string
	Attempt     int
	State       WorkState
	RequestedAt time.Time
	LastError   string
}

// Proposal is an agent's answer to the task at one stage.
type Proposal struct {
	AgentID   string
	Role      string
	Stage     int
	Content   string
	Reasoning string
	Model     string
	Usage     Usage
	Duration  time.Duration
	Attempt   int
	// StartedAt is when the worker started the LLM call (zero when not
	// known): StartedAt minus the work's RequestedAt is its queue wait.
	StartedAt time.Time
}

// Critique is a peer review of a proposal with structured scores in [0,1].
type Critique struct {
	ReviewerID  string
	AuthorID    string
	Stage       int
	Scores      map[string]float64
	Overall     float64
	Strengths   []string
	Issues      []string
	Suggestions []string
	// Confidence is how sure the reviewer says it is of its scores, in
	// [0,1]; nil when it said nothing (a critique from before the field).
	// AggregationConfidence weighs the critique by it.
	Confidence *float64
	Model      string
	Usage      Usage
	Duration   time.Duration
	Attempt    int
	// StartedAt is when the worker started the LLM call (zero when not known).
	StartedAt time.Time
}

// AgentFailure records an agent that exhausted its retries.
type AgentFailure struct {
	AgentID string
	Stage   int
	Reason  string
}

// Ranked is a final proposal with its score and the critiques of the final review.
type Ranked struct {
	Rank      int
	Proposal  Proposal
	Score     float64
	Scores    map[string]float64
	Scored    bool
	Critiques []Critique
	// ScoreSpread is the highest overall score of Critiques less the
	// lowest: how far its reviewers disagree about this proposal.
	ScoreSpread float64
}

// Result is the outcome of a completed deliberation.
type Result struct {
	Winner  string
	Ranking []Ranked
	// History holds the proposals and critiques of the stages before the final one.
	History  []Proposal
	Reviews  []Critique
	Failures []AgentFailure
	Usage    Usage
	Duration time.Duration
	// Stopped is ReasonBudgetExceeded when a budget ended the rounds before
	// constraints.rounds (the last stage that was critiqued is ranked); empty
	// otherwise.
	Stopped string
	// PromptCache measures the prefix cache on the deliberation's calls
	// (set at completion; zero in the candidates of the review gate).
	PromptCache PromptCache
	// Protocol is the protocol that ran (set at completion).
	Protocol Protocol
	// RoundsRun is how many rounds ran after the first answers (the final
	// stage): constraints.rounds, fewer when stop_when_stable or a budget
	// ended them early, 0 for vote and judge.
	RoundsRun int
	// Votes is the tally of the final answers (protocols vote and debate).
	Votes []Vote
	// Final is the judge's answer (protocol judge, or synthesize); nil
	// when there is none.
	Final *Final
	// Aggregation is how the ranking's scores were made from the critiques.
	Aggregation Aggregation
	// Agreement is Kendall's W of the final review (KendallW), meaningful
	// when Raters ≥ 2: the number of complete rankings it measures (0 when
	// there is none to measure, e.g. the ring review).
	Agreement float64
	Raters    int
}

// Outbox keys of the terminal events.
const (
	OutboxCompleted = "completed"
	OutboxFailed    = "failed"
	OutboxCancelled = "cancelled"
)

// isEnd reports whether outbox key k is the end of a deliberation.
func isEnd(k string) bool { return k == OutboxCompleted || k == OutboxFailed || k == OutboxCancelled }

// IsEndKey reports whether outbox key k names the terminal event of a
// deliberation (completed, failed or cancelled).
func IsEndKey(k string) bool { return isEnd(k) }

// Deliberation is the aggregate that runs one deliberation. Every method is
// a pure state transition: callers persist the aggregate (compare-and-set)
// and then send what Outbox names, removing each key once sent. Every
// transition is idempotent: applying a duplicate or stale result changes
// nothing and reports false.
type Deliberation struct {
	ID         string
	Task       Task
	Status     Status
	Stage      int
	Phase      Phase
	StartedAt  time.Time
	Deadline   time.Time
	FinishedAt time.Time
	Work       map[string]*Work
	Proposals  map[string]Proposal
	Critiques  map[string]Critique
	Failures   []AgentFailure
	Result     *Result
	Reason     string
	// Outbox lists the work keys (and OutboxCompleted / OutboxFailed /
	// OutboxCancelled, and the review gate's ReviewKey) whose
	// events are still to be sent.
	Outbox []string
	// Job is the Ray job running this deliberation (backend ray), if any.
	Job *JobRef
	// Calls counts the work issued so far, retries included (each attempt
	// of a call is one): what constraints.max_calls bounds.
	Calls int
	// Review is the human gate's record (constraints.review), nil until
	// the deliberation first reaches it.
	Review *ReviewState
}

// JobRef records the Ray job of a deliberation.
type JobRef struct {
	SubmissionID string
	Attempt      int
	State        JobState
	SubmittedAt  time.Time
	// EndedAt is when the job was first seen ended (Ray's end time when
	// known); zero while it runs.
	EndedAt time.Time
	Message string
	// LogTail is the end of an ended job's logs; LogsRecorded says it was
	// read (it may be empty).
	LogTail      string
	LogsRecorded bool
	// Deleted says the job was deleted from the cluster (JobDeleted).
	Deleted bool
	// Pool says the deliberation runs in the warm pool of council-agent
	// workers: SubmissionID names its work item, not a Ray job of its own.
	Pool bool
}

// DeliberationID derives the id of the deliberation a request starts from
// the request event's source and id, so a retried request maps to the same
// deliberation. The id is subject-safe (hex).
func DeliberationID(source, eventID string) string {
	sum := sha256.Sum256([]byte(source + "\x00" + eventID))
	return "dlb-" + hex.EncodeToString(sum[:12])
}

// CheckDeliberationID returns an error wrapping ErrInvalid unless id can
// name a stored deliberation: 1 to 255 ASCII letters, digits, '-' and '_'
// (DeliberationID makes such ids; a Store refuses any other, so that an id
// never turns into a pattern or a path where it is used as a key).
func CheckDeliberationID(id string) error {
	ok := id != "" && len(id) <= 255
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return Invalidf("deliberation id %q: want 1 to 255 letters, digits, '-' and '_'", id)
	}
	return nil
}

// CheckAgentID returns an error wrapping ErrInvalid unless id can name an
// agent: 1 to 64 letters, digits, '-' and '_' (ValidAgentID; an agent id is
// a token of NATS subjects and KV keys).
func CheckAgentID(id string) error {
	if !ValidAgentID(id) {
		return Invalidf("agent id %q: want 1 to 64 letters, digits, '-' and '_'", id)
	}
	return nil
}

// CheckWorkKey returns an error wrapping ErrInvalid unless key can name a
// piece of work (ProposalKey, CritiqueKey): at most 255 bytes of
// dot-separated tokens of letters, digits, '-' and '_', so that it is never
// a subject wildcard where it becomes part of an event id, a Nats-Msg-Id or
// a KV key.
func CheckWorkKey(key string) error {
	ok := key != "" && len(key) <= 255
	for tok := range strings.SplitSeq(key, ".") {
		if !ok {
			break
		}
		ok = tok != ""
		for i := 0; ok && i < len(tok); i++ {
			c := tok[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		}
	}
	if !ok {
		return Invalidf("work key %q: want dot-separated tokens of letters, digits, '-' and '_' (at most 255 bytes)", key)
	}
	return nil
}

// CheckWorkIDs is the one check of the ids a work request carries — the
// deliberation id, the work key and the agents' ids — run at the edge of
// every function before any of them reaches an LLM call, a NATS subject or
// a KV key. It returns an error wrapping ErrInvalid naming each bad id.
func CheckWorkIDs(deliberationID, key string, agentIDs ...string) error {
	errs := []error{CheckDeliberationID(deliberationID), CheckWorkKey(key)}
	for _, a := range agentIDs {
		errs = append(errs, CheckAgentID(a))
	}
	return errors.Join(errs...)
}

// ProposalKey names the proposal work of agent at stage.
func ProposalKey(stage int, agent string) string { return fmt.Sprintf("p.%d.%s", stage, agent) }

// CritiqueKey names the critique work of reviewer on author's proposal at stage.
func CritiqueKey(stage int, author, reviewer string) string {
	return fmt.Sprintf("c.%d.%s.%s", stage, author, reviewer)
}

// New starts a deliberation of task at now. The task gets its defaults and
// is validated; an invalid task returns an error wrapping ErrInvalid.
func New(id string, task Task, now time.Time) (*Deliberation, error) {
	if id == "" {
		return nil, Invalidf("deliberation id is required")
	}
	task = task.WithDefaults()
	if err := task.Validate(); err != nil {
		return nil, err
	}
	d := &Deliberation{
		ID:        id,
		Task:      task,
		Status:    StatusRunning,
		Phase:     PhaseProposing,
		StartedAt: now,
		Deadline:  now.Add(task.Constraints.Timeout),
		Work:      map[string]*Work{},
		Proposals: map[string]Proposal{},
		Critiques: map[string]Critique{},
	}
	if task.Backend == BackendRay {
		// The Ray job runs the engine; execute only follows it.
		return d, nil
	}
	for _, a := range task.Agents {
		d.addWork(&Work{Key: ProposalKey(0, a.ID), Kind: WorkProposal, Stage: 0, AgentID: a.ID}, now)
	}
	return d, nil
}

func (d *Deliberation) addWork(w *Work, now time.Time) {
	w.Attempt = 1
	w.State = WorkPending
	w.RequestedAt = now
	d.Work[w.Key] = w
	d.Outbox = append(d.Outbox, w.Key)
	d.Calls++
}

// Agent returns the agent with id.
func (d *Deliberation) Agent(id string) (Agent, bool) {
	for _, a := range d.Task.Agents {
		if a.ID == id {
			return a, true
		}
	}
	return Agent{}, false
}

// Failed reports whether agent id has been recorded as failed.
func (d *Deliberation) Failed(id string) bool {
	return slices.ContainsFunc(d.Failures, func(f AgentFailure) bool { return f.AgentID == id })
}

// Pending returns the pending work, in key order.
func (d *Deliberation) Pending() []*Work {
	var out []*Work
	for _, w := range d.Work {
		if w.State == WorkPending {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Owes reports whether d still owes something, so that the sweep must
// look at it: it runs, events of its outbox are not sent yet, or its Ray
// job has not been seen ending or is not deleted from the cluster yet.
func (d *Deliberation) Owes() bool {
	return !d.Status.Terminal() || len(d.Outbox) > 0 || d.Job.jobOwed()
}

// Acknowledge removes key from the outbox once its event has been sent.
// It reports whether the outbox changed.
func (d *Deliberation) Acknowledge(key string) bool {
	i := slices.Index(d.Outbox, key)
	if i < 0 {
		return false
	}
	d.Outbox = slices.Delete(d.Outbox, i, i+1)
	return true
}

// RecordProposal records the proposal that answers work key. It reports
// whether the state changed (false for a duplicate, a stale or an unknown result).
func (d *Deliberation) RecordProposal(key string, p Proposal, now time.Time) (bool, error) {
	w, err := d.acceptResult(key, WorkProposal, p.AgentID)
	if err != nil || w == nil {
		return false, err
	}
	if strings.TrimSpace(p.Content) == "" {
		d.recordFailure(w, w.Attempt, "empty proposal", true, now)
		return true, nil
	}
	w.State = WorkDone
	p.Stage = w.Stage
	if a, ok := d.Agent(w.AgentID); ok && p.Role == "" {
		p.Role = a.Role
	}
	d.Proposals[key] = p
	d.advance(now)
	return true, nil
}

// RecordCritique records the critique that answers work key.
func (d *Deliberation) RecordCritique(key string, c Critique, now time.Time) (bool, error) {
	w, err := d.acceptResult(key, WorkCritique, c.ReviewerID)
	if err != nil || w == nil {
		return false, err
	}
	if err := c.validate(d.Task.Constraints.Rubric); err != nil {
		d.recordFailure(w, w.Attempt, err.Error(), true, now)
		return true, nil
	}
	w.State = WorkDone
	c.Stage, c.AuthorID = w.Stage, w.AuthorID
	d.Critiques[key] = c
	d.advance(now)
	return true, nil
}

// RecordFailure records that attempt of work key failed with reason. A
// retryable failure with retries left asks for the work again (the key goes
// back to the outbox with the next attempt); otherwise the agent is recorded
// as failed and the deliberation goes on without it.
func (d *Deliberation) RecordFailure(key string, attempt int, reason string, retryable bool, now time.Time) (bool, error) {
	if d.Status.Terminal() {
		return false, nil
	}
	w, ok := d.Work[key]
	if !ok {
		return false, fmt.Errorf("%w: deliberation %s has no work %q", ErrNotFound, d.ID, key)
	}
	if w.State != WorkPending || attempt != w.Attempt {
		return false, nil
	}
	if !now.Before(d.Deadline) {
		// generate and critique cut every call at the deadline: a failure
		// that arrives once it has passed is the deadline's doing, not the
		// agent's, so the deliberation ends as a timeout, as the deadline
		// timer would end it.
		return d.Tick(now), nil
	}
	d.recordFailure(w, attempt, reason, retryable, now)
	return true, nil
}

func (d *Deliberation) recordFailure(w *Work, attempt int, reason string, retryable bool, now time.Time) {
	w.LastError = reason
	if retryable && attempt <= d.Task.Constraints.MaxRetries {
		if ok, why := d.affords(1, d.workPrompt(w)); !ok {
			reason += "; not retried: " + why
			retryable = false
		}
	}
	if retryable && attempt <= d.Task.Constraints.MaxRetries {
		d.Calls++
		w.Attempt = attempt + 1
		w.RequestedAt = now
		if !slices.Contains(d.Outbox, w.Key) {
			d.Outbox = append(d.Outbox, w.Key)
		}
		return
	}
	w.State = WorkFailed
	if !d.Failed(w.AgentID) {
		d.Failures = append(d.Failures, AgentFailure{
			AgentID: w.AgentID, Stage: w.Stage,
			Reason: fmt.Sprintf("%s %s failed after %d attempt(s): %s", w.Kind, w.Key, attempt, reason),
		})
	}
	d.advance(now)
}

// acceptResult returns the pending work a result answers, nil when the
// result is a duplicate or arrives after the end, or an error when the
// result does not belong to this deliberation.
func (d *Deliberation) acceptResult(key string, kind WorkKind, agent string) (*Work, error) {
	if d.Status.Terminal() {
		return nil, nil
	}
	w, ok := d.Work[key]
	if !ok {
		return nil, fmt.Errorf("%w: deliberation %s has no work %q", ErrNotFound, d.ID, key)
	}
	if w.Kind != kind || w.AgentID != agent {
		return nil, Invalidf("work %q of deliberation %s is a %s by %s, not a %s by %s", key, d.ID, w.Kind, w.AgentID, kind, agent)
	}
	if w.State != WorkPending {
		return nil, nil
	}
	return w, nil
}

// Tick checks the deadline at now. It reports whether the state changed.
func (d *Deliberation) Tick(now time.Time) bool {
	if d.Status.Terminal() || now.Before(d.Deadline) {
		return false
	}
	done, total := 0, 0
	for _, w := range d.Work {
		total++
		if w.State != WorkPending {
			done++
		}
	}
	waiting := ""
	if d.Phase == PhaseAwaitingReview {
		waiting = " while awaiting review"
	}
	d.fail(fmt.Sprintf("timeout: timeout_seconds=%d elapsed%s with %d of %d calls finished",
		int(d.Task.Constraints.Timeout.Seconds()), waiting, done, total), now)
	return true
}

// Resend puts back in the outbox the pending work requested before
// now-after, so that a request lost on the way is sent again. It reports
// whether the state changed.
func (d *Deliberation) Resend(now time.Time, after time.Duration) bool {
	if d.Status.Terminal() {
		return false
	}
	changed := false
	for _, w := range d.Pending() {
		if now.Sub(w.RequestedAt) >= after && !slices.Contains(d.Outbox, w.Key) {
			w.RequestedAt = now
			d.Outbox = append(d.Outbox, w.Key)
			changed = true
		}
	}
	return changed
}

// Fail ends the deliberation as failed with reason (used for failures
// outside the engine, like a Ray job that failed). It reports whether the
// state changed.
func (d *Deliberation) Fail(reason string, now time.Time) bool {
	if d.Status.Terminal() {
		return false
	}
	d.fail(reason, now)
	return true
}

// Complete ends the deliberation with a result computed elsewhere (the Ray
// backend). It reports whether the state changed.
func (d *Deliberation) Complete(r Result, now time.Time) bool {
	if d.Status.Terminal() {
		return false
	}
	d.Result = &r
	d.Status, d.Phase, d.FinishedAt = StatusCompleted, PhaseDone, now
	d.Outbox = append(d.Outbox, OutboxCompleted)
	return true
}

// Undeliverable ends a completed deliberation whose result cannot be
// delivered (larger than the broker takes) as failed with reason, instead of
// retrying what never succeeds; it reports whether the state changed.
func (d *Deliberation) Undeliverable(reason string, now time.Time) bool {
	if d.Status != StatusCompleted {
		return false
	}
	d.Outbox = slices.DeleteFunc(d.Outbox, func(k string) bool { return k == OutboxCompleted })
	d.Result = nil
	d.fail(reason, now)
	return true
}

func (d *Deliberation) fail(reason string, now time.Time) {
	d.Status, d.Phase, d.Reason, d.FinishedAt = StatusFailed, PhaseDone, reason, now
	d.dropWorkFromOutbox()
	d.Outbox = append(d.Outbox, OutboxFailed)
}

func (d *Deliberation) dropWorkFromOutbox() {
	d.Outbox = slices.DeleteFunc(d.Outbox, func(k string) bool { return !isEnd(k) })
}

// survivors returns the agents, in task order, that have a done proposal at
// stage and have not failed.
func (d *Deliberation) survivors(stage int) []Agent {
	var out []Agent
	for _, a := range d.Task.Agents {
		if d.Failed(a.ID) {
			continue
		}
		if _, ok := d.Proposals[ProposalKey(stage, a.ID)]; ok {
			out = append(out, a)
		}
	}
	return out
}

func (d *Deliberation) phaseDone() bool {
	for _, w := range d.Work {
		if w.Stage == d.Stage && w.State == WorkPending {
			want := WorkProposal
			if d.Phase == PhaseCritiquing {
				want = WorkCritique
			}
			if w.Kind == want {
				return false
			}
		}
	}
	return true
}

// advance moves the deliberation forward as far as the recorded results allow.
func (d *Deliberation) advance(now time.Time) {
	for d.Status == StatusRunning && d.phaseDone() {
		alive := d.survivors(d.Stage)
		if len(alive) == 0 {
			d.fail("all agents failed: "+d.failureSummary(), now)
			return
		}
		switch d.advanceProtocol(alive, now) {
		case stepStop:
			return
		case stepContinue:
			continue
		}
		switch {
		case d.Phase == PhaseAwaitingReview:
			return
		case d.Phase == PhaseProposing && (d.Task.Kind.SinglePass() || len(alive) == 1):
			d.finish(now, "")
			return
		case d.Phase == PhaseProposing:
			if ok, why := d.affords(d.critiqueCount(alive), d.critiquePrompts(alive)); !ok {
				// Proposals no peer can review cannot be ranked.
				d.fail(ReasonBudgetExceeded+": the critiques of stage "+fmt.Sprint(d.Stage)+" "+why, now)
				return
			}
			d.assignCritiques(alive, now)
			d.Phase = PhaseCritiquing
		case d.Stage < d.Task.Constraints.Rounds:
			if ok, _ := d.affords(d.roundCalls(alive), d.roundPrompts(alive, "")); !ok {
				// The next round could not be critiqued: rank this one.
				d.finish(now, ReasonBudgetExceeded)
				return
			}
			d.revise(alive, now)
		default:
			d.finish(now, "")
			return
		}
	}
}

// assignCritiques gives each proposal of the stage to the next k agents in
// ring order.
func (d *Deliberation) assignCritiques(alive []Agent, now time.Time) {
	k := d.reviewersPerProposal(d.Stage, len(alive))
	for i, author := range alive {
		for j := 1; j <= k; j++ {
			reviewer := alive[(i+j)%len(alive)]
			d.addWork(&Work{
				Key: CritiqueKey(d.Stage, author.ID, reviewer.ID), Kind: WorkCritique,
				Stage: d.Stage, AgentID: reviewer.ID, AuthorID: author.ID,
			}, now)
		}
	}
}

func (d *Deliberation) failureSummary() string {
	if len(d.Failures) == 0 {
		return "no proposal"
	}
	parts := make([]string, 0, len(d.Failures))
	for _, f := range d.Failures {
		parts = append(parts, f.AgentID+": "+f.Reason)
	}
	return strings.Join(parts, "; ")
}

// revise starts the next stage: every surviving agent revises.
func (d *Deliberation) revise(alive []Agent, now time.Time) {
	d.Stage++
	d.Phase = PhaseProposing
	for _, a := range alive {
		d.addWork(&Work{Key: ProposalKey(d.Stage, a.ID), Kind: WorkProposal, Stage: d.Stage, AgentID: a.ID}, now)
	}
}

// critiqueCount is how many critiques a stage of alive agents asks for.
func (d *Deliberation) critiqueCount(alive []Agent) int {
	return len(alive) * d.reviewersPerProposal(d.Stage, len(alive))
}

// complete ranks the final proposals and ends the deliberation; stopped
// is Result.Stopped.
func (d *Deliberation) complete(now time.Time, stopped string) {
	r := d.Ranking(now)
	r.Stopped = stopped
	d.protocolResult(&r)
	r.PromptCache = d.promptCache(r.Usage)
	d.Result = &r
	d.Status, d.Phase, d.FinishedAt = StatusCompleted, PhaseDone, now
	d.dropWorkFromOutbox()
	d.Outbox = append(d.Outbox, OutboxCompleted)
}

// Ranking ranks the proposals of the current stage with their critiques,
// as the deliberation's result would be at now (the candidates of the
// review gate; the result of complete).
func (d *Deliberation) Ranking(now time.Time) Result {
	r := Result{Duration: now.Sub(d.StartedAt), Failures: slices.Clone(d.Failures)}
	final := d.Stage
	for _, a := range d.survivors(final) {
		p := d.Proposals[ProposalKey(final, a.ID)]
		r.Ranking = append(r.Ranking, Ranked{Proposal: p, Critiques: d.critiquesOf(final, a.ID)})
	}
	// In task order: ties keep it (rank sorts stably).
	r.rank(d.aggregation())
	for _, k := range sortedKeys(d.Proposals) {
		if p := d.Proposals[k]; p.Stage < final || d.Failed(p.AgentID) {
			r.History = append(r.History, p)
		}
		r.Usage = r.Usage.Add(d.Proposals[k].Usage)
	}
	for _, k := range sortedKeys(d.Critiques) {
		c := d.Critiques[k]
		if c.Stage < final || d.Failed(c.AuthorID) {
			r.Reviews = append(r.Reviews, c)
		}
		r.Usage = r.Usage.Add(c.Usage)
	}
	return r
}

func (d *Deliberation) critiquesOf(stage int, author string) []Critique {
	var out []Critique
	for _, k := range sortedKeys(d.Critiques) {
		if c := d.Critiques[k]; c.Stage == stage && c.AuthorID == author {
			out = append(out, c)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c Critique) validate(rubric []string) error {
	check := func(name string, v float64) error {
		if v < 0 || v > 1 || v != v {
			return fmt.Errorf("score %s=%v is outside [0,1]", name, v)
		}
		return nil
	}
	if err := check("overall", c.Overall); err != nil {
		return err
	}
	if c.Confidence != nil {
		if err := check("confidence", *c.Confidence); err != nil {
			return err
		}
	}
	for _, name := range rubric {
		v, ok := c.Scores[name]
		if !ok {
			return fmt.Errorf("score for criterion %q is missing", name)
		}
		if err := check(name, v); err != nil {
			return err
		}
	}
	return nil
}

// Clone returns a deep copy of d: changing one never changes the other.
func (d *Deliberation) Clone() *Deliberation {
	c := *d
	c.Task = d.Task.clone()
	c.Work = make(map[string]*Work, len(d.Work))
	for k, w := range d.Work {
		cw := *w
		c.Work[k] = &cw
	}
	c.Proposals = maps.Clone(d.Proposals)
	c.Critiques = make(map[string]Critique, len(d.Critiques))
	for k, cr := range d.Critiques {
		c.Critiques[k] = cr.clone()
	}
	if d.Proposals == nil {
		c.Proposals = nil
	}
	if d.Critiques == nil {
		c.Critiques = nil
	}
	c.Failures = slices.Clone(d.Failures)
	c.Outbox = slices.Clone(d.Outbox)
	if d.Result != nil {
		r := *d.Result
		r.Ranking = make([]Ranked, len(d.Result.Ranking))
		for i, rk := range d.Result.Ranking {
			rk.Scores = maps.Clone(rk.Scores)
			cs := make([]Critique, len(rk.Critiques))
			for j, cr := range rk.Critiques {
				cs[j] = cr.clone()
			}
			if rk.Critiques == nil {
				cs = nil
			}
			rk.Critiques = cs
			r.Ranking[i] = rk
		}
		if d.Result.Ranking == nil {
			r.Ranking = nil
		}
		r.History = slices.Clone(d.Result.History)
		r.Reviews = make([]Critique, len(d.Result.Reviews))
		for i, cr := range d.Result.Reviews {
			r.Reviews[i] = cr.clone()
		}
		if d.Result.Reviews == nil {
			r.Reviews = nil
		}
		r.Failures = slices.Clone(d.Result.Failures)
		r.Votes = cloneVotes(d.Result.Votes)
		if d.Result.Final != nil {
			f := *d.Result.Final
			r.Final = &f
		}
		c.Result = &r
	}
	if d.Job != nil {
		j := *d.Job
		c.Job = &j
	}
	if d.Review != nil {
		rv := *d.Review
		rv.Feedback = slices.Clone(d.Review.Feedback)
		c.Review = &rv
	}
	return &c
}

func (c Critique) clone() Critique {
	c.Scores = maps.Clone(c.Scores)
	if c.Confidence != nil {
		v := *c.Confidence
		c.Confidence = &v
	}
	c.Strengths, c.Issues, c.Suggestions = slices.Clone(c.Strengths), slices.Clone(c.Issues), slices.Clone(c.Suggestions)
	return c
}

func (t Task) clone() Task {
	t.Agents = slices.Clone(t.Agents)
	t.Constraints.Rubric = slices.Clone(t.Constraints.Rubric)
	t.Constraints.Metadata = maps.Clone(t.Constraints.Metadata)
	return t
}
