package execute

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// Agent runs one backend ray deliberation in-process: it is what the
// council-agent binary does inside its Ray job. It runs the domain engine
// (council.Engine, agents in parallel) on the task and records the outcome
// in the state execute owns, through the same Outbox, so the
// deliberation.completed or deliberation.failed event is the one execute
// would send, with the same id (a duplicate is dropped by the broker).
type Agent struct {
	Store   council.Store
	Emitter council.Emitter
	LLM     council.Completer
	// Tokens, when set, receives the streamed proposal tokens.
	Tokens council.TokenSink
	// Legacy, when set, publishes the old fleet's agent responses when the
	// deliberation ends (legacy.Publisher), as execute does with WithLegacy.
	Legacy legacyPublisher
	// Source is the CloudEvents source of the emitted events (default
	// council.dev/council-agent).
	Source string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives progress; nil discards.
	Log *slog.Logger
}

// Run runs deliberation id of task and returns it as stored at the end:
// completed or failed. The deliberation is normally stored by execute
// before it submits the job; Run stores it when it is missing (an agent
// started by hand). A deliberation that has already ended is not run
// again; its outbox is flushed. The deadline is the stored one
// (timeout_seconds from when execute accepted the request).
//
// A deliberation that ends elsewhere meanwhile (a cancel, or execute's
// deadline) stops the run at the engine's next transition, its calls
// cancelled; Run returns it as stored.
//
// Run returns an error, and records nothing, when ctx ends before the
// engine does (the job was stopped: execute decides what follows); it
// returns an error wrapping council.ErrUnavailable when the state cannot be
// read or written.
func (a *Agent) Run(ctx context.Context, id string, task council.Task) (*council.Deliberation, error) {
	return a.run(ctx, id, &task)
}

// RunStored runs the stored deliberation id, on the task stored with it
// (what a job or a pool worker gets is the id only). It returns an error
// wrapping council.ErrInvalid when no deliberation id is stored; otherwise
// as Run.
func (a *Agent) RunStored(ctx context.Context, id string) (*council.Deliberation, error) {
	return a.run(ctx, id, nil)
}

func (a *Agent) run(ctx context.Context, id string, task *council.Task) (*council.Deliberation, error) {
	if a.Store == nil || a.Emitter == nil || a.LLM == nil {
		return nil, errors.New("execute: agent: a Store, an Emitter and an LLM are required")
	}
	now, log := a.Now, a.Log
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	source := a.Source
	if source == "" {
		source = "council.dev/council-agent"
	}
	outbox, err := NewOutbox(a.Store, a.Emitter, source, now, log)
	if err != nil {
		return nil, err
	}
	outbox.legacy = a.Legacy

	stored, rev, err := a.load(ctx, id, task, now())
	if err != nil {
		return nil, err
	}
	if stored.Status.Terminal() {
		log.Info("deliberation already ended", "deliberation", id, "status", stored.Status)
		return stored, outbox.Flush(ctx, stored, rev)
	}

	local := stored.Task
	local.Backend = council.BackendFunctions // so that New creates the work
	d, err := council.New(id, local, stored.StartedAt)
	if err != nil {
		return nil, err
	}
	d.Deadline = stored.Deadline
	log.Info("deliberation running", "deliberation", id, "task_id", local.ID, "agents", len(local.Agents),
		"deadline", d.Deadline)
	engine := council.Engine{LLM: a.LLM, Tokens: a.Tokens, Now: now, OnChange: func(ctx context.Context, _ *council.Deliberation) error {
		// A deliberation ended elsewhere (cancelled, or failed by execute at
		// its deadline) stops the run: the engine cancels its calls.
		if s, _, err := a.Store.Get(ctx, id); err == nil && s.Status.Terminal() {
			return errEndedElsewhere
		}
		return nil
	}}
	if err := engine.Run(ctx, d); errors.Is(err, errEndedElsewhere) {
		s, _, err := a.Store.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("execute: agent: deliberation %s: %w", id, err)
		}
		log.Info("deliberation ended elsewhere", "deliberation", id, "status", s.Status, "reason", s.Reason)
		return s, nil
	} else if err != nil {
		return nil, fmt.Errorf("execute: agent: deliberation %s: %w", id, err)
	}

	return outbox.Apply(ctx, id, func(s *council.Deliberation) (bool, error) {
		if s.Status.Terminal() {
			return false, nil // execute ended it first (timeout, cancel)
		}
		s.Proposals, s.Critiques, s.Failures, s.Calls = d.Proposals, d.Critiques, d.Failures, d.Calls
		if d.Status == council.StatusCompleted && d.Result != nil {
			return s.Complete(*d.Result, now()), nil
		}
		return s.Fail(d.Reason, now()), nil
	})
}

// load returns the stored deliberation id, storing a new one of task when
// there is none (an agent started by hand); without a task, none stored is
// an error wrapping council.ErrInvalid.
func (a *Agent) load(ctx context.Context, id string, task *council.Task, now time.Time) (*council.Deliberation, uint64, error) {
	d, rev, err := a.Store.Get(ctx, id)
	if !errors.Is(err, council.ErrNotFound) {
		if err != nil {
			return nil, 0, fmt.Errorf("execute: agent: load deliberation %s: %w", id, err)
		}
		return d, rev, nil
	}
	if task == nil {
		return nil, 0, council.Invalidf("execute: agent: no deliberation %s is stored", id)
	}
	t := *task
	t.Backend = council.BackendRay
	if d, err = council.New(id, t, now); err != nil {
		return nil, 0, err
	}
	rev, err = a.Store.Create(ctx, d)
	if errors.Is(err, council.ErrConflict) {
		d, rev, err = a.Store.Get(ctx, id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("execute: agent: store deliberation %s: %w", id, err)
	}
	return d, rev, nil
}

// JobRequest reads the request of a council-agent job from its environment
// (getenv): the deliberation id from COUNCIL_DELIBERATION_ID and, for a job
// started by hand, the deliberation.requested event from COUNCIL_REQUEST
// (base64 of the structured JSON event) or from the file
// COUNCIL_REQUEST_FILE names (relative to dir), decoded and validated. The
// jobs execute submits carry the id only: task is nil, and the job reads
// the task from the stored state (Agent.RunStored). With an event and no
// id, the id is derived from the event's source and id. Errors wrap
// council.ErrInvalid.
func JobRequest(getenv func(string) string, dir string) (id string, task *council.Task, err error) {
	id = strings.TrimSpace(getenv(EnvDeliberationID))
	var body []byte
	switch enc, file := strings.TrimSpace(getenv(EnvRequest)), strings.TrimSpace(getenv(EnvRequestFile)); {
	case enc != "":
		if body, err = base64.StdEncoding.DecodeString(enc); err != nil {
			return "", nil, council.Invalidf("%s is not base64: %v", EnvRequest, err)
		}
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		if body, err = os.ReadFile(file); err != nil {
			return "", nil, council.Invalidf("%s: %v", EnvRequestFile, err)
		}
	case id != "":
		if err := council.CheckDeliberationID(id); err != nil {
			return "", nil, fmt.Errorf("%s: %w", EnvDeliberationID, err)
		}
		return id, nil, nil
	default:
		return "", nil, council.Invalidf("no request: set %s (the jobs execute submits), or %s or %s", EnvDeliberationID, EnvRequest, EnvRequestFile)
	}
	e, err := events.DecodeStructured(body)
	if err != nil {
		return "", nil, fmt.Errorf("the request: %w", err)
	}
	t, err := events.DecodeRequest(e)
	if err != nil {
		return "", nil, err
	}
	if id == "" {
		id = council.DeliberationID(e.Source(), e.ID())
	}
	return id, &t, nil
}

// Summary is the one-line outcome of deliberation d, for logs:
// "deliberation <id> completed: …" or "deliberation <id> failed: <reason>".
func Summary(d *council.Deliberation) string {
	switch {
	case d == nil:
		return "deliberation unknown failed: no state"
	case d.Status == council.StatusCompleted && d.Result != nil:
		return fmt.Sprintf("deliberation %s completed: winner %s of %d ranked proposal(s), %d tokens, %s",
			d.ID, d.Result.Winner, len(d.Result.Ranking), d.Result.Usage.TotalTokens,
			d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond))
	default:
		return fmt.Sprintf("deliberation %s %s: %s", d.ID, d.Status, d.Reason)
	}
}
