package council

import (
	"context"
	"time"
)

// Message is one chat message sent to the LLM.
type Message struct {
	Role    string // "system" or "user"
	Content string
}

// JSONSchema asks the LLM server for structured output (OpenAI / vLLM
// response_format json_schema).
type JSONSchema struct {
	Name   string
	Schema []byte // a JSON Schema document
	Strict bool
}

// Usage counts the tokens of one or more completions.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// CachedTokens are the prompt tokens the server took from its prefix
	// cache instead of computing them (part of PromptTokens); 0 when the
	// server reports none.
	CachedTokens int
}

// Add returns the sum of u and o.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + o.PromptTokens,
		CompletionTokens: u.CompletionTokens + o.CompletionTokens,
		TotalTokens:      u.TotalTokens + o.TotalTokens,
		CachedTokens:     u.CachedTokens + o.CachedTokens,
	}
}

// CompletionRequest is one chat completion.
type CompletionRequest struct {
	// Model is the model to use; empty means the adapter's configured default.
	Model string
	// Fallbacks are the models to ask, in order, when Model fails with a
	// retryable server error or times out (Agent.FallbackModels); the
	// Completion's Model says which one answered.
	Fallbacks []string
	Messages  []Message
	// Temperature is the sampling temperature; 0 asks for greedy decoding
	// (an adapter sends it, never leaves it to the server's default).
	Temperature float64
	MaxTokens   int
	// Seed makes sampling reproducible where the server supports it; nil means unset.
	Seed *int64
	// Schema, when set, asks for output that conforms to it.
	Schema *JSONSchema
	// OnToken, when set, asks for a streamed completion and receives each
	// piece of text as it arrives. It must not block for long.
	OnToken func(text string)
}

// Completion is the answer to a CompletionRequest.
type Completion struct {
	Content      string
	Reasoning    string
	Model        string
	FinishReason string
	Usage        Usage
}

// Completer is the LLM port.
//
// Complete returns an error wrapping ErrInvalid when the server rejects the
// request as malformed (HTTP 400), a model (req.Model or a fallback) is not
// allowed, or ctx's deadline leaves no time for the wait before another
// attempt, and one wrapping ErrUnavailable for connection errors, timeouts,
// 5xx and 429 once its own retries are spent: with a deadline on ctx it
// retries until the deadline, without one a configured number of times.
type Completer interface {
	Complete(ctx context.Context, req CompletionRequest) (Completion, error)
}

// TokenChunk is one piece of a streamed completion.
type TokenChunk struct {
	DeliberationID string
	AgentID        string
	Stage          int
	// Attempt is the attempt of the work item this completion answers
	// (Work.Attempt): a retried generation streams under a new attempt, so
	// its text never mixes with the text of the one before.
	Attempt int
	// Seq numbers the pieces of one completion (one attempt) from 1; a
	// message that coalesces several pieces carries the number of its last.
	Seq  int
	Text string
	// Final marks the last chunk of a completion; Text is empty then.
	Final bool
}

// TokenSink receives streamed tokens. Publishing is best effort: an error is
// reported to the caller, who logs it; a generation never fails because of it.
type TokenSink interface {
	PublishToken(ctx context.Context, c TokenChunk) error
}

// Envelope is an outgoing event in wire-neutral form: the events module
// encodes domain values into envelopes, adapters turn envelopes into
// CloudEvents on their transport.
type Envelope struct {
	// ID is deterministic for a given piece of work, so that a re-sent
	// envelope is recognised as a duplicate (Nats-Msg-Id, CloudEvents id).
	ID      string
	Type    string
	Source  string
	Subject string
	Time    time.Time
	// Data is the JSON payload.
	Data []byte
	// TraceParent and TraceState are the W3C trace context this event
	// continues (https://www.w3.org/TR/trace-context/), carried as the
	// CloudEvents distributed-tracing extension (traceparent, tracestate);
	// empty: none. The domain never sets them: the composition root's
	// tracing decorator of the Emitter does, from the context of the event
	// that caused this one.
	TraceParent string
	TraceState  string
}

// Emitter sends events (execute's fan-out, the Ray job's results).
//
// Emit returns an error wrapping ErrUnavailable when the broker cannot take
// the event; emitting the same envelope ID twice is not an error.
type Emitter interface {
	Emit(ctx context.Context, e Envelope) error
}

// Timer sends an event later, durably: At has the broker emit e at time
// at, even when no process of the sender runs then (execute's deadline of
// each deliberation). Setting the same envelope ID again is not an error.
// At returns an error wrapping ErrUnavailable when the broker cannot take
// the timer.
type Timer interface {
	At(ctx context.Context, at time.Time, e Envelope) error
}

// Store keeps deliberation state with compare-and-set.
//
// Get returns ErrNotFound for an unknown id. Create returns ErrConflict when
// the id exists. Update returns ErrConflict when revision is not the current
// one. Get, Create and Update return ErrInvalid for an id that
// CheckDeliberationID refuses, and Get for a stored value that does not
// decode. List returns every stored deliberation and Active those that owe
// something (Deliberation.Owes), in no
// particular order; both leave out a stored value that does not decode,
// after setting it aside (Quarantined lists those with the reason), so one
// bad value never stops the others. CountEnd adds the end of d to the
// durable Tally, once per deliberation (counting the same end again changes
// nothing); Tally reads it. All return ErrUnavailable when the store cannot
// be reached.
type Store interface {
	Get(ctx context.Context, id string) (*Deliberation, uint64, error)
	Create(ctx context.Context, d *Deliberation) (uint64, error)
	Update(ctx context.Context, d *Deliberation, revision uint64) (uint64, error)
	List(ctx context.Context) ([]*Deliberation, error)
	Active(ctx context.Context) ([]*Deliberation, error)
	Quarantined(ctx context.Context) ([]Quarantined, error)
	CountEnd(ctx context.Context, d *Deliberation) error
	Tally(ctx context.Context) (Tally, error)
}

// Quarantined is a stored deliberation set aside because its value does
// not decode: its id, why, and when it was found.
type Quarantined struct {
	ID     string
	Reason string
	At     time.Time
}
