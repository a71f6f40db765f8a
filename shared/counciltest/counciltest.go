// Package counciltest holds fakes of council's ports with function fields,
// in-memory implementations, and contract suites that every implementation
// of a port (the fake and the real adapter) must pass.
package counciltest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"council.dev/shared/council"
)

// Completer is a fake council.Completer. CompleteFunc, when set, answers;
// otherwise the fake answers like a cooperative model: a critique-shaped
// JSON for critique schemas, {"tasks": []} for other schemas, and a short
// text otherwise. Every request is recorded.
type Completer struct {
	CompleteFunc func(ctx context.Context, req council.CompletionRequest) (council.Completion, error)
	// Models, when set, is the allow-list: a request naming another model
	// gets an error wrapping council.ErrInvalid, as the port requires.
	Models []string

	mu       sync.Mutex
	requests []council.CompletionRequest
}

var _ council.Completer = (*Completer)(nil)

// Complete implements council.Completer.
func (c *Completer) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	c.mu.Lock()
	c.requests = append(c.requests, req)
	c.mu.Unlock()
	if req.Model != "" && len(c.Models) > 0 && !slices.Contains(c.Models, req.Model) {
		return council.Completion{}, fmt.Errorf("counciltest: model %q: %w: not allowed", req.Model, council.ErrInvalid)
	}
	if c.CompleteFunc != nil {
		return c.CompleteFunc(ctx, req)
	}
	return Answer(req), nil
}

// Requests returns the requests seen so far.
func (c *Completer) Requests() []council.CompletionRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.requests)
}

// Answer is the cooperative model's answer to req.
func Answer(req council.CompletionRequest) council.Completion {
	usage := council.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}
	if req.Schema == nil {
		text := "proposal: " + lastLine(req.Messages)
		if req.OnToken != nil {
			for _, w := range strings.SplitAfter(text, " ") {
				req.OnToken(w)
			}
		}
		return council.Completion{Content: text, Model: "fake", FinishReason: "stop", Usage: usage}
	}
	if req.Schema.Name == "critique" {
		return council.Completion{Content: CritiqueJSON(RubricOf(req.Schema), 7), Model: "fake", Usage: usage}
	}
	return council.Completion{Content: `{"tasks": []}`, Model: "fake", Usage: usage}
}

func lastLine(ms []council.Message) string {
	if len(ms) == 0 {
		return ""
	}
	s := strings.TrimSpace(ms[len(ms)-1].Content)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// RubricOf returns the criteria of a critique schema.
func RubricOf(s *council.JSONSchema) []string {
	var doc struct {
		Properties struct {
			Scores struct {
				Required []string `json:"required"`
			} `json:"scores"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(s.Schema, &doc)
	return doc.Properties.Scores.Required
}

// CritiqueJSON returns a critique answer giving every criterion score (0..10).
func CritiqueJSON(rubric []string, score int) string {
	scores := map[string]int{}
	for _, r := range rubric {
		scores[r] = score
	}
	b, _ := json.Marshal(map[string]any{
		"scores": scores, "overall": score,
		"strengths": []string{"clear"}, "issues": []string{"thin on tests"}, "suggestions": []string{"add tests"},
	})
	return string(b)
}

// Emitter records emitted envelopes. EmitFunc, when set, is called first and
// its error returned (the envelope is then not recorded).
type Emitter struct {
	EmitFunc func(ctx context.Context, e council.Envelope) error

	mu   sync.Mutex
	sent []council.Envelope
}

var _ council.Emitter = (*Emitter)(nil)

// Emit implements council.Emitter.
func (m *Emitter) Emit(ctx context.Context, e council.Envelope) error {
	if m.EmitFunc != nil {
		if err := m.EmitFunc(ctx, e); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, e)
	return nil
}

// Sent returns the envelopes emitted so far.
func (m *Emitter) Sent() []council.Envelope {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.sent)
}

// Types returns the types of the envelopes emitted so far, in order.
func (m *Emitter) Types() []string {
	var out []string
	for _, e := range m.Sent() {
		out = append(out, e.Type)
	}
	return out
}

// TokenSink records token chunks.
type TokenSink struct {
	mu     sync.Mutex
	chunks []council.TokenChunk
}

var _ council.TokenSink = (*TokenSink)(nil)

// PublishToken implements council.TokenSink.
func (s *TokenSink) PublishToken(_ context.Context, c council.TokenChunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunks = append(s.chunks, c)
	return nil
}

// Chunks returns the chunks published so far.
func (s *TokenSink) Chunks() []council.TokenChunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.chunks)
}

// Store is an in-memory council.Store with compare-and-set. Values are
// deep-copied through JSON, as a real store would.
type Store struct {
	mu          sync.Mutex
	data        map[string]storeEntry
	rev         uint64
	quarantined []council.Quarantined
	tally       council.Tally
}

type storeEntry struct {
	raw []byte
	rev uint64
}

var _ council.Store = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{data: map[string]storeEntry{}} }

// Get implements council.Store.
func (s *Store) Get(_ context.Context, id string) (*council.Deliberation, uint64, error) {
	if err := council.CheckDeliberationID(id); err != nil {
		return nil, 0, fmt.Errorf("counciltest: get: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[id]
	if !ok {
		return nil, 0, fmt.Errorf("counciltest: get %s: %w", id, council.ErrNotFound)
	}
	var d council.Deliberation
	if err := json.Unmarshal(e.raw, &d); err != nil {
		return nil, 0, fmt.Errorf("counciltest: get %s: %w", id, council.Invalidf("stored value does not decode: %v", err))
	}
	return &d, e.rev, nil
}

// Create implements council.Store.
func (s *Store) Create(_ context.Context, d *council.Deliberation) (uint64, error) {
	if err := council.CheckDeliberationID(d.ID); err != nil {
		return 0, fmt.Errorf("counciltest: create: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[d.ID]; ok {
		return 0, fmt.Errorf("counciltest: create %s: %w", d.ID, council.ErrConflict)
	}
	return s.put(d)
}

// Update implements council.Store.
func (s *Store) Update(_ context.Context, d *council.Deliberation, revision uint64) (uint64, error) {
	if err := council.CheckDeliberationID(d.ID); err != nil {
		return 0, fmt.Errorf("counciltest: update: %w", err)
	}
	if revision == 0 {
		return 0, fmt.Errorf("counciltest: update %s: %w", d.ID, council.Invalidf("revision 0; use Create"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[d.ID]
	if !ok || e.rev != revision {
		return 0, fmt.Errorf("counciltest: update %s at revision %d: %w", d.ID, revision, council.ErrConflict)
	}
	return s.put(d)
}

// List returns every stored deliberation that decodes, ordered by id; the
// others are set aside (Quarantined).
func (s *Store) List(_ context.Context) ([]*council.Deliberation, error) {
	return s.list(func(*council.Deliberation) bool { return true }), nil
}

// Active returns the stored deliberations that owe something
// (council.Deliberation.Owes), ordered by id.
func (s *Store) Active(_ context.Context) ([]*council.Deliberation, error) {
	return s.list((*council.Deliberation).Owes), nil
}

// ByTask returns the ids of the stored deliberations of task taskID, in no
// particular order.
func (s *Store) ByTask(_ context.Context, taskID string) ([]string, error) {
	var ids []string
	for _, d := range s.list(func(d *council.Deliberation) bool { return d.Task.ID == taskID }) {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

// Quarantined returns the deliberations set aside by List or Active.
func (s *Store) Quarantined(_ context.Context) ([]council.Quarantined, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.quarantined), nil
}

// CountEnd implements council.Store.
func (s *Store) CountEnd(_ context.Context, d *council.Deliberation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tally.Count(d)
	return nil
}

// Tally implements council.Store.
func (s *Store) Tally(_ context.Context) (council.Tally, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tally
	t.Buckets, t.Recent = slices.Clone(t.Buckets), slices.Clone(t.Recent)
	return t, nil
}

// Corrupt replaces the stored value of id by bytes that do not decode (for
// the quarantine cases of the contract suite).
func (s *Store) Corrupt(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.data[id]
	e.raw = []byte("{not json")
	s.data[id] = e
}

func (s *Store) list(keep func(*council.Deliberation) bool) []*council.Deliberation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*council.Deliberation{}
	for _, id := range slices.Sorted(maps.Keys(s.data)) {
		var d council.Deliberation
		if err := json.Unmarshal(s.data[id].raw, &d); err != nil {
			if !slices.ContainsFunc(s.quarantined, func(q council.Quarantined) bool { return q.ID == id }) {
				s.quarantined = append(s.quarantined, council.Quarantined{ID: id, Reason: err.Error(), At: time.Now()})
			}
			continue
		}
		if keep(&d) {
			out = append(out, &d)
		}
	}
	return out
}

func (s *Store) put(d *council.Deliberation) (uint64, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	s.rev++
	s.data[d.ID] = storeEntry{raw: raw, rev: s.rev}
	return s.rev, nil
}
