package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"

	"council.dev/shared/council"
)

// Stored state, version 2: a small header and immutable records.
//
// The header (the value under the deliberation's id) holds what changes:
// status, stage, phase, times, the work with its attempts, the failures, the
// outbox, the Ray job and the result's ranking. Every proposal, critique
// and the task are records of their own, written once and never changed,
// each under "<id>.<record key>"; the header names them. A record key is
// the work key (or "task") followed by a hash of the record's bytes, so two
// different answers to the same work can never overwrite each other: the
// header that wins the compare-and-set names the one it accepted.
//
// A StateCodec remembers, per deliberation, the records it has written or
// read, so that a transition encodes and writes only the new records and
// the header, and a read loads only the records it has not seen.

// StateRecord is one immutable record of a stored deliberation: Key is
// relative to the deliberation (stored under "<id>.<Key>").
type StateRecord struct {
	Key  string
	Data []byte
	// value is the domain value the record holds.
	value any
}

// StateCodec encodes deliberations into a version-2 header and records and
// decodes every stored version. It remembers the records of the
// deliberations it has seen (at most max of them, the least recently used
// dropped first). It is safe for concurrent use.
type StateCodec struct {
	mu    sync.Mutex
	known map[string]*knownRecords
	order []string // least recently used first
	max   int
}

// knownRecords are the records of one deliberation this codec has written
// or read: by record key, and the record keys of each work key.
type knownRecords struct {
	byKey  map[string]any
	byWork map[string][]string
	// segments are, by group ("p.0"), the segment records of the group's
	// work: of all of it once none is pending, of parts of it before
	// (chunks of work no longer pending), with how much work each holds.
	segments map[string][]segmentRef
	// task is the key of the task's record: a deliberation's task never
	// changes.
	task string
}

type segmentRef struct {
	key string
	n   int
}

// DefaultStateCodecSize is how many deliberations a StateCodec remembers
// the records of by default.
const DefaultStateCodecSize = 1024

// NewStateCodec returns a codec that remembers the records of up to max
// deliberations (DefaultStateCodecSize when max ≤ 0).
func NewStateCodec(max int) *StateCodec {
	if max <= 0 {
		max = DefaultStateCodecSize
	}
	return &StateCodec{known: map[string]*knownRecords{}, max: max}
}

type headerV2 struct {
	SchemaVersion int        `json:"schema_version"`
	ID            string     `json:"id"`
	Task          string     `json:"task"`
	Status        string     `json:"status"`
	Stage         int        `json:"stage"`
	Phase         string     `json:"phase"`
	StartedAt     time.Time  `json:"started_at"`
	Deadline      time.Time  `json:"deadline"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	// Work is the work of the groups (a stage's proposals, or its
	// critiques) that still have some pending; Segments names the records
	// of the groups where none is (they never change again).
	Work     []workV2 `json:"work"`
	Segments []string `json:"segments,omitempty"`
	// Proposals and Critiques name, by work key, the records of results
	// that answer no work of the header (the Ray job records the engine's
	// results on a deliberation that has no work of its own).
	Proposals map[string]string `json:"proposals,omitempty"`
	Critiques map[string]string `json:"critiques,omitempty"`
	Failures  []failureV2       `json:"failures,omitempty"`
	Result    *resultV2         `json:"result,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Outbox    []string          `json:"outbox"`
	Job       *jobV2            `json:"job,omitempty"`
	// Calls counts the calls issued (retries included); absent in headers
	// written before budgets (read as 0).
	Calls int `json:"calls,omitempty"`
	// Review is the review gate's record; absent when the deliberation
	// never reached a gate.
	Review *reviewV2 `json:"review,omitempty"`
}

// reviewV2 is the stored council.ReviewState.
type reviewV2 struct {
	Round    int          `json:"round"`
	Stopped  string       `json:"stopped,omitempty"`
	Feedback []feedbackV2 `json:"feedback,omitempty"`
}

type feedbackV2 struct {
	Stage    int    `json:"stage"`
	Text     string `json:"text"`
	Reviewer string `json:"reviewer,omitempty"`
}

func reviewOf(r *council.ReviewState) *reviewV2 {
	if r == nil {
		return nil
	}
	out := &reviewV2{Round: r.Round, Stopped: r.Stopped}
	for _, f := range r.Feedback {
		out.Feedback = append(out.Feedback, feedbackV2(f))
	}
	return out
}

func (r *reviewV2) state() *council.ReviewState {
	if r == nil {
		return nil
	}
	out := &council.ReviewState{Round: r.Round, Stopped: r.Stopped}
	for _, f := range r.Feedback {
		out.Feedback = append(out.Feedback, council.ReviewFeedback(f))
	}
	return out
}

// workV2 is one piece of work, compact (the header holds one per call):
// its kind, stage and agents are in its key; T is when it was last
// requested, in nanoseconds after the deliberation started; R is the hash
// of the record (the proposal or critique) that answered it, whose key is
// "<key>.<R>".
type workV2 struct {
	Key       string `json:"k"`
	State     string `json:"s"`
	Attempt   int    `json:"a"`
	T         int64  `json:"t"`
	LastError string `json:"e,omitempty"`
	R         string `json:"r,omitempty"`
}

// segmentRecord is the record of a group of work none of which is pending.
type segmentRecord struct {
	Work []workV2 `json:"work"`
}

type failureV2 struct {
	AgentID string `json:"agent_id"`
	Stage   int    `json:"stage"`
	Reason  string `json:"reason"`
}

type resultV2 struct {
	Winner     string      `json:"winner"`
	Ranking    []rankedV2  `json:"ranking"`
	History    []string    `json:"history,omitempty"`
	Reviews    []string    `json:"reviews,omitempty"`
	Failures   []failureV2 `json:"failures,omitempty"`
	Usage      Usage       `json:"usage"`
	DurationNS int64       `json:"duration_ns"`
	Stopped    string      `json:"stopped,omitempty"`
	// PromptCache is council.PromptCache (added within v2: absent from
	// older results, which decode with zero).
	PromptCache *promptCacheV2 `json:"prompt_cache,omitempty"`
	// Protocol, RoundsRun, Votes and Final are what the protocol decided
	// (added within v2: absent from older results).
	Protocol  string `json:"protocol,omitempty"`
	RoundsRun int    `json:"rounds_run,omitempty"`
	Votes     []Vote `json:"votes,omitempty"`
	Final     *Final `json:"final,omitempty"`
	// Aggregation, Agreement and Raters are council.Result's (added within
	// v2: absent from older results, which decode as the mean, no agreement).
	Aggregation string  `json:"aggregation,omitempty"`
	Agreement   float64 `json:"agreement,omitempty"`
	Raters      int     `json:"raters,omitempty"`
}

type promptCacheV2 struct {
	CachedTokenShare  float64 `json:"cached_token_share"`
	SharedPrefixShare float64 `json:"shared_prefix_share"`
	PromptBytes       int64   `json:"prompt_bytes"`
	SharedPrefixBytes int64   `json:"shared_prefix_bytes"`
	Unmeasured        int     `json:"unmeasured,omitempty"`
}

type rankedV2 struct {
	Rank      int                `json:"rank"`
	Proposal  string             `json:"proposal"`
	Score     float64            `json:"score"`
	Scores    map[string]float64 `json:"scores,omitempty"`
	Scored    bool               `json:"scored"`
	Critiques []string           `json:"critiques,omitempty"`
	// ScoreSpread is council.Ranked.ScoreSpread (added within v2).
	ScoreSpread float64 `json:"score_spread,omitempty"`
}

type jobV2 struct {
	SubmissionID string     `json:"submission_id"`
	Attempt      int        `json:"attempt"`
	State        string     `json:"state"`
	SubmittedAt  time.Time  `json:"submitted_at"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	Message      string     `json:"message,omitempty"`
	LogTail      string     `json:"log_tail,omitempty"`
	LogsRecorded bool       `json:"logs_recorded,omitempty"`
	Deleted      bool       `json:"deleted,omitempty"`
	Pool         bool       `json:"pool,omitempty"`
}

// proposalRecord and critiqueRecord are the records of a proposal and a
// critique: the wire payload's fields, with the duration exact.
type proposalRecord struct {
	AgentID    string `json:"agent_id"`
	Role       string `json:"role"`
	Stage      int    `json:"stage"`
	Content    string `json:"content"`
	Reasoning  string `json:"reasoning,omitempty"`
	Model      string `json:"model"`
	Usage      Usage  `json:"usage"`
	DurationNS int64  `json:"duration_ns"`
	Attempt    int    `json:"attempt"`
	// StartedAt is when the LLM call started (added within v2: absent
	// from older records and when not known).
	StartedAt time.Time `json:"started_at,omitzero"`
}

type critiqueRecord struct {
	ReviewerID  string             `json:"reviewer_id"`
	AuthorID    string             `json:"author_id"`
	Stage       int                `json:"stage"`
	Scores      map[string]float64 `json:"scores"`
	Overall     float64            `json:"overall"`
	Strengths   []string           `json:"strengths,omitempty"`
	Issues      []string           `json:"issues,omitempty"`
	Suggestions []string           `json:"suggestions,omitempty"`
	Model       string             `json:"model"`
	Usage       Usage              `json:"usage"`
	DurationNS  int64              `json:"duration_ns"`
	Attempt     int                `json:"attempt"`
	StartedAt   time.Time          `json:"started_at,omitzero"`
	// Confidence is council.Critique.Confidence (added within v2: absent
	// from older records and when the reviewer stated none).
	Confidence *float64 `json:"confidence,omitempty"`
}

// Encode returns the version-2 header of d and the records it names that
// the codec does not know to be stored; the caller stores the records
// (before the header, which names them) and then calls Written. An error
// wraps council.ErrInvalid.
func (c *StateCodec) Encode(d *council.Deliberation) ([]byte, []StateRecord, error) {
	if d == nil {
		return nil, nil, council.Invalidf("nil deliberation")
	}
	c.mu.Lock()
	k := c.touch(d.ID)
	enc := recordEncoder{known: k}
	h, err := enc.header(d)
	c.mu.Unlock()
	if err != nil {
		return nil, nil, fmt.Errorf("events: encode state of %s: %w", d.ID, err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, nil, fmt.Errorf("events: encode state of %s: %w: %w", d.ID, council.ErrInvalid, err)
	}
	return compressHeader(b), enc.fresh, nil
}

// A header above compressAbove bytes is stored compressed: headerS2
// followed by the S2 block of its JSON (the header is rewritten on every
// transition and is repetitive; S2 makes it 3 to 5 times smaller for the
// cost of a memory copy). JSON never starts with a zero byte.
const (
	compressAbove = 1 << 10
	headerS2      = "\x00s2"
	// maxHeader bounds what a compressed header may expand to.
	maxHeader = 64 << 20
)

// StateHeaderJSON returns the JSON of a stored header, compressed or not
// (for tools and fixtures). An error wraps council.ErrInvalid.
func StateHeaderJSON(b []byte) ([]byte, error) {
	out, err := decompressHeader(b)
	if err != nil {
		return nil, council.Invalidf("%v", err)
	}
	return out, nil
}

func compressHeader(b []byte) []byte {
	if len(b) <= compressAbove {
		return b
	}
	out := make([]byte, len(headerS2), len(headerS2)+s2.MaxEncodedLen(len(b)))
	copy(out, headerS2)
	return append(out, s2.Encode(nil, b)...)
}

func decompressHeader(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte(headerS2)) {
		return b, nil
	}
	block := b[len(headerS2):]
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("compressed header: %w", err)
	}
	if n > maxHeader {
		return nil, fmt.Errorf("compressed header expands to %d bytes, more than %d", n, maxHeader)
	}
	out, err := s2.Decode(nil, block)
	if err != nil {
		return nil, fmt.Errorf("compressed header: %w", err)
	}
	return out, nil
}

// Written records that the records of deliberation id are stored.
func (c *StateCodec) Written(id string, records []StateRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.touch(id)
	for _, r := range records {
		k.add(r.Key, r.value)
	}
}

// Forget drops what the codec remembers of deliberation id.
func (c *StateCodec) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.known, id)
	c.order = slices.DeleteFunc(c.order, func(s string) bool { return s == id })
}

// touch returns the known records of id, making id the most recently used.
// c.mu is held.
func (c *StateCodec) touch(id string) *knownRecords {
	k, ok := c.known[id]
	if ok {
		if i := slices.Index(c.order, id); i >= 0 && i != len(c.order)-1 {
			c.order = append(slices.Delete(c.order, i, i+1), id)
		}
		return k
	}
	k = &knownRecords{byKey: map[string]any{}, byWork: map[string][]string{}, segments: map[string][]segmentRef{}}
	c.known[id] = k
	c.order = append(c.order, id)
	for len(c.order) > c.max {
		delete(c.known, c.order[0])
		c.order = c.order[1:]
	}
	return k
}

func (k *knownRecords) add(key string, v any) {
	if _, ok := k.byKey[key]; ok {
		return
	}
	k.byKey[key] = v
	work := key[:strings.LastIndexByte(key, '.')]
	k.byWork[work] = append(k.byWork[work], key)
	switch v := v.(type) {
	case []workV2:
		g := strings.TrimPrefix(work, "seg.")
		k.segments[g] = append(k.segments[g], segmentRef{key: key, n: len(v)})
	case council.Task:
		k.task = key
	}
}

// recordEncoder builds a header, naming known records and encoding new ones.
type recordEncoder struct {
	known *knownRecords
	fresh []StateRecord
}

// ref returns the record key of v, the value of work key work: a known
// record holding an equal value, or a new record.
func (e *recordEncoder) ref(work string, v any) (string, error) {
	for _, key := range e.known.byWork[work] {
		if sameRecord(e.known.byKey[key], v) {
			return key, nil
		}
	}
	for _, r := range e.fresh {
		if strings.HasPrefix(r.Key, work+".") && sameRecord(r.value, v) {
			return r.Key, nil
		}
	}
	var body any
	switch v := v.(type) {
	case council.Task:
		body = requestOf(v)
	case council.Proposal:
		body = proposalRecord{
			AgentID: v.AgentID, Role: v.Role, Stage: v.Stage, Content: v.Content, Reasoning: v.Reasoning,
			Model: v.Model, Usage: usageOf(v.Usage), DurationNS: int64(v.Duration), Attempt: v.Attempt,
			StartedAt: v.StartedAt.UTC(),
		}
	case []workV2:
		body = segmentRecord{Work: v}
	case council.Critique:
		body = critiqueRecord{
			ReviewerID: v.ReviewerID, AuthorID: v.AuthorID, Stage: v.Stage, Scores: v.Scores, Overall: v.Overall,
			Strengths: v.Strengths, Issues: v.Issues, Suggestions: v.Suggestions,
			Model: v.Model, Usage: usageOf(v.Usage), DurationNS: int64(v.Duration), Attempt: v.Attempt,
			StartedAt: v.StartedAt.UTC(), Confidence: v.Confidence,
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return "", council.Invalidf("encode record %s: %v", work, err)
	}
	sum := sha256.Sum256(b)
	key := work + "." + hex.EncodeToString(sum[:8])
	if _, ok := e.known.byKey[key]; !ok {
		e.fresh = append(e.fresh, StateRecord{Key: key, Data: b, value: v})
	}
	return key, nil
}

func sameRecord(a, b any) bool {
	switch a := a.(type) {
	case council.Proposal:
		b, ok := b.(council.Proposal)
		if !ok || !a.StartedAt.Equal(b.StartedAt) {
			return false
		}
		a.StartedAt, b.StartedAt = time.Time{}, time.Time{}
		return a == b
	case council.Critique:
		b, ok := b.(council.Critique)
		return ok && a.ReviewerID == b.ReviewerID && a.AuthorID == b.AuthorID && a.Stage == b.Stage &&
			a.Overall == b.Overall && maps.Equal(a.Scores, b.Scores) && slices.Equal(a.Strengths, b.Strengths) &&
			slices.Equal(a.Issues, b.Issues) && slices.Equal(a.Suggestions, b.Suggestions) &&
			a.Model == b.Model && a.Usage == b.Usage && a.Duration == b.Duration && a.Attempt == b.Attempt &&
			a.StartedAt.Equal(b.StartedAt) && (a.Confidence == nil) == (b.Confidence == nil) &&
			(a.Confidence == nil || *a.Confidence == *b.Confidence)
	case council.Task:
		return reflect.DeepEqual(a, b)
	case []workV2:
		b, ok := b.([]workV2)
		return ok && slices.Equal(a, b)
	}
	return false
}

func (e *recordEncoder) header(d *council.Deliberation) (*headerV2, error) {
	task, err := e.known.task, error(nil)
	if task == "" {
		if task, err = e.ref("task", d.Task); err != nil {
			return nil, err
		}
	}
	h := &headerV2{
		SchemaVersion: 2, ID: d.ID, Task: task, Status: string(d.Status), Stage: d.Stage, Phase: string(d.Phase),
		StartedAt: d.StartedAt, Deadline: d.Deadline, FinishedAt: timeOrNil(d.FinishedAt),
		Failures: failuresV2(d.Failures), Reason: d.Reason, Outbox: slices.Clone(d.Outbox),
		Calls: d.Calls, Review: reviewOf(d.Review),
	}
	if h.Outbox == nil {
		h.Outbox = []string{}
	}
	// The groups of the work, in order of name (that of their keys), and
	// which have work pending. A group with none that this codec has
	// stored or read as a segment of the same size is that segment: work
	// that is no longer pending never changes, so it is not encoded again.
	type group struct{ n, pending int }
	groups := map[string]*group{}
	for key, w := range d.Work {
		g := groups[groupOfKey(key)]
		if g == nil {
			g = &group{}
			groups[groupOfKey(key)] = g
		}
		g.n++
		if w.State == council.WorkPending {
			g.pending++
		}
	}
	h.Work = []workV2{}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		g := groups[name]
		if g.pending == 0 {
			if key := e.known.whole(name, g.n); key != "" {
				h.Segments = append(h.Segments, key)
				continue
			}
		}
		ws, err := e.group(d, name)
		if err != nil {
			return nil, err
		}
		if g.pending == 0 {
			seg, err := e.ref("seg."+name, ws)
			if err != nil {
				return nil, err
			}
			h.Segments = append(h.Segments, seg)
			continue
		}
		segs, rest, err := e.chunks(name, ws)
		if err != nil {
			return nil, err
		}
		h.Segments = append(h.Segments, segs...)
		h.Work = append(h.Work, rest...)
	}
	for key, p := range d.Proposals {
		if d.Work[key] == nil {
			if h.Proposals == nil {
				h.Proposals = map[string]string{}
			}
			if h.Proposals[key], err = e.ref(key, p); err != nil {
				return nil, err
			}
		}
	}
	for key, c := range d.Critiques {
		if d.Work[key] == nil {
			if h.Critiques == nil {
				h.Critiques = map[string]string{}
			}
			if h.Critiques[key], err = e.ref(key, c); err != nil {
				return nil, err
			}
		}
	}
	if d.Job != nil {
		h.Job = &jobV2{
			SubmissionID: d.Job.SubmissionID, Attempt: d.Job.Attempt, State: string(d.Job.State),
			SubmittedAt: d.Job.SubmittedAt, EndedAt: timeOrNil(d.Job.EndedAt), Message: d.Job.Message,
			LogTail: d.Job.LogTail, LogsRecorded: d.Job.LogsRecorded, Deleted: d.Job.Deleted, Pool: d.Job.Pool,
		}
	}
	if d.Result != nil {
		if h.Result, err = e.result(*d.Result); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// whole returns the key of a known segment holding all n pieces of work
// of group name, or "".
func (k *knownRecords) whole(name string, n int) string {
	for _, sg := range k.segments[name] {
		if sg.n == n {
			return sg.key
		}
	}
	return ""
}

// group returns the work of group name of d, in order of key.
func (e *recordEncoder) group(d *council.Deliberation, name string) ([]workV2, error) {
	var keys []string
	for key := range d.Work {
		if groupOfKey(key) == name {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	ws := make([]workV2, 0, len(keys))
	for _, key := range keys {
		w := d.Work[key]
		if w.Key != key {
			return nil, council.Invalidf("work %q holds key %q", key, w.Key)
		}
		if want := workKey(w); want != key {
			return nil, council.Invalidf("work %q is a %s by %s at stage %d: its key would be %q", key, w.Kind, w.AgentID, w.Stage, want)
		}
		wv := workV2{Key: key, State: string(w.State), Attempt: w.Attempt, LastError: w.LastError}
		wv.T = w.RequestedAt.UnixNano() - d.StartedAt.UnixNano() // wall clock: what decoding adds back
		var (
			rec string
			err error
		)
		if p, ok := d.Proposals[key]; ok {
			rec, err = e.ref(key, p)
		} else if c, ok := d.Critiques[key]; ok {
			rec, err = e.ref(key, c)
		}
		if err != nil {
			return nil, err
		}
		if rec != "" {
			wv.R = rec[len(key)+1:]
		}
		ws = append(ws, wv)
	}
	return ws, nil
}

// chunkSize is how many pieces of work of a running group, no longer
// pending and not yet in a segment, the header carries at most: as many
// again make a segment record of their own. Work that is no longer pending
// never changes, so the header of a large stage stops rewriting the
// answered work with every result.
const chunkSize = 16

// chunks splits ws, the work of running group name, into segments (known
// ones holding exactly some of ws, and a new one when chunkSize or more
// are left that are no longer pending) and the rest, which the header
// carries.
func (e *recordEncoder) chunks(name string, ws []workV2) ([]string, []workV2, error) {
	at := make(map[string]int, len(ws))
	for i, w := range ws {
		at[w.Key] = i
	}
	covered := make([]bool, len(ws))
	var segs []string
	for _, sg := range e.known.segments[name] {
		if sg.n >= len(ws) {
			continue
		}
		part, _ := e.known.byKey[sg.key].([]workV2)
		fits := len(part) > 0
		for _, w := range part {
			i, ok := at[w.Key]
			if !ok || covered[i] || ws[i] != w || w.State == string(council.WorkPending) {
				fits = false
				break
			}
		}
		if !fits {
			continue
		}
		for _, w := range part {
			covered[at[w.Key]] = true
		}
		segs = append(segs, sg.key)
	}
	var uncovered, pending, answered []workV2
	for i, w := range ws {
		if covered[i] {
			continue
		}
		uncovered = append(uncovered, w)
		if w.State == string(council.WorkPending) {
			pending = append(pending, w)
		} else {
			answered = append(answered, w)
		}
	}
	if len(answered) < chunkSize {
		return segs, uncovered, nil
	}
	seg, err := e.ref("seg."+name, answered)
	if err != nil {
		return nil, nil, err
	}
	return append(segs, seg), pending, nil
}

func (e *recordEncoder) result(r council.Result) (*resultV2, error) {
	out := &resultV2{
		Winner: r.Winner, Ranking: make([]rankedV2, 0, len(r.Ranking)), Failures: failuresV2(r.Failures),
		Usage: usageOf(r.Usage), DurationNS: int64(r.Duration), Stopped: r.Stopped,
		Protocol: string(r.Protocol), RoundsRun: r.RoundsRun, Votes: votesOf(r.Votes), Final: finalOf(r.Final),
		Aggregation: string(r.Aggregation), Agreement: r.Agreement, Raters: r.Raters,
	}
	if pc := r.PromptCache; pc != (council.PromptCache{}) {
		out.PromptCache = &promptCacheV2{
			CachedTokenShare: pc.CachedTokenShare, SharedPrefixShare: pc.SharedPrefixShare,
			PromptBytes: pc.PromptBytes, SharedPrefixBytes: pc.SharedPrefixBytes, Unmeasured: pc.Unmeasured,
		}
	}
	for _, rk := range r.Ranking {
		p, err := e.ref(council.ProposalKey(rk.Proposal.Stage, rk.Proposal.AgentID), rk.Proposal)
		if err != nil {
			return nil, err
		}
		v := rankedV2{Rank: rk.Rank, Proposal: p, Score: rk.Score, Scores: rk.Scores, Scored: rk.Scored, ScoreSpread: rk.ScoreSpread}
		if v.Critiques, err = e.critiques(rk.Critiques); err != nil {
			return nil, err
		}
		out.Ranking = append(out.Ranking, v)
	}
	for _, p := range r.History {
		key, err := e.ref(council.ProposalKey(p.Stage, p.AgentID), p)
		if err != nil {
			return nil, err
		}
		out.History = append(out.History, key)
	}
	var err error
	if out.Reviews, err = e.critiques(r.Reviews); err != nil {
		return nil, err
	}
	return out, nil
}

func (e *recordEncoder) critiques(cs []council.Critique) ([]string, error) {
	var out []string
	for _, c := range cs {
		key, err := e.ref(council.CritiqueKey(c.Stage, c.AuthorID, c.ReviewerID), c)
		if err != nil {
			return nil, err
		}
		out = append(out, key)
	}
	return out, nil
}

// groupOfKey is the group of the work under key: its first two tokens
// ("p.0" of "p.0.qa-1"); the whole key when it has fewer dots.
func groupOfKey(key string) string {
	i := strings.IndexByte(key, '.')
	if i < 0 {
		return key
	}
	if j := strings.IndexByte(key[i+1:], '.'); j >= 0 {
		return key[:i+1+j]
	}
	return key
}

// workKey is the key a work's kind, stage and agents make.
func workKey(w *council.Work) string {
	// council.ProposalKey and CritiqueKey, without fmt: this runs for every
	// work entry of every transition.
	if w.Kind == council.WorkCritique {
		return "c." + strconv.Itoa(w.Stage) + "." + w.AuthorID + "." + w.AgentID
	}
	if council.IsJudgeKey(w.Key) {
		return "j." + strconv.Itoa(w.Stage) + "." + w.AgentID
	}
	return "p." + strconv.Itoa(w.Stage) + "." + w.AgentID
}

// parseWorkKey is the inverse of workKey.
func parseWorkKey(key string) (council.Work, error) {
	parts := strings.Split(key, ".")
	if len(parts) >= 3 {
		stage, err := strconv.Atoi(parts[1])
		switch {
		case err != nil || stage < 0:
		case (parts[0] == "p" || parts[0] == "j") && len(parts) == 3:
			return council.Work{Key: key, Kind: council.WorkProposal, Stage: stage, AgentID: parts[2]}, nil
		case parts[0] == "c" && len(parts) == 4:
			return council.Work{Key: key, Kind: council.WorkCritique, Stage: stage, AuthorID: parts[2], AgentID: parts[3]}, nil
		}
	}
	return council.Work{}, council.Invalidf("work key %q: want p.<stage>.<agent>, j.<stage>.<judge> or c.<stage>.<author>.<reviewer>", key)
}

func failuresV2(fs []council.AgentFailure) []failureV2 {
	var out []failureV2
	for _, f := range fs {
		out = append(out, failureV2{AgentID: f.AgentID, Stage: f.Stage, Reason: f.Reason})
	}
	return out
}

func failuresOfV2(fs []failureV2) []council.AgentFailure {
	var out []council.AgentFailure
	for _, f := range fs {
		out = append(out, council.AgentFailure{AgentID: f.AgentID, Stage: f.Stage, Reason: f.Reason})
	}
	return out
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// StateHeader is a decoded stored header: the records it names are loaded
// separately (Records, then Deliberation).
type StateHeader struct {
	id     string
	legacy *council.Deliberation // versions 0 and 1: the whole deliberation
	h      *headerV2
}

// ID is the id of the deliberation the header belongs to.
func (s *StateHeader) ID() string {
	if s.legacy != nil {
		return s.legacy.ID
	}
	return s.id
}

// Status is the status the header records.
func (s *StateHeader) Status() council.Status {
	if s.legacy != nil {
		return s.legacy.Status
	}
	return council.Status(s.h.Status)
}

// DecodeStateHeader reads a stored header of any version this build knows:
// 2, 1, or the unversioned value. An error wraps council.ErrInvalid.
func DecodeStateHeader(b []byte) (*StateHeader, error) {
	b, err := decompressHeader(b)
	if err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	version, err := firstKeyVersion(b)
	if err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	if version != 2 {
		d, err := DecodeState(b)
		if err != nil {
			return nil, err
		}
		return &StateHeader{id: d.ID, legacy: d}, nil
	}
	var h headerV2
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	if err := council.CheckDeliberationID(h.ID); err != nil {
		return nil, fmt.Errorf("events: decode state: %w", err)
	}
	return &StateHeader{id: h.ID, h: &h}, nil
}

// Decode reads a stored header of any version and, for version 2, the
// records it names: those the codec does not remember come from load,
// which returns their bytes in the order of keys (an error of load is
// returned as is). An error of the codec wraps council.ErrInvalid.
func (c *StateCodec) Decode(b []byte, load func(keys []string) ([][]byte, error)) (*council.Deliberation, error) {
	h, err := DecodeStateHeader(b)
	if err != nil {
		return nil, err
	}
	return c.Deliberation(h, load)
}

// Deliberation builds the deliberation of header h, loading through load
// the records the codec does not remember.
func (c *StateCodec) Deliberation(s *StateHeader, load func(keys []string) ([][]byte, error)) (*council.Deliberation, error) {
	if s.legacy != nil {
		return s.legacy, nil
	}
	h := s.h
	// Records first, then what the segments name (two rounds at most).
	for range 3 {
		c.mu.Lock()
		k := c.touch(h.ID)
		var missing []string
		for _, key := range h.recordKeys(func(key string) any { return k.byKey[key] }) {
			if _, ok := k.byKey[key]; !ok && !slices.Contains(missing, key) {
				missing = append(missing, key)
			}
		}
		c.mu.Unlock()
		if len(missing) == 0 {
			break
		}
		raw, err := load(missing)
		if err != nil {
			return nil, err
		}
		if len(raw) != len(missing) {
			return nil, fmt.Errorf("events: decode state of %s: %w", h.ID, council.Invalidf("%d records loaded, want %d", len(raw), len(missing)))
		}
		values := make(map[string]any, len(missing))
		for i, key := range missing {
			v, err := decodeRecord(key, raw[i])
			if err != nil {
				return nil, fmt.Errorf("events: decode state of %s: %w", h.ID, err)
			}
			values[key] = v
		}
		c.mu.Lock()
		k = c.touch(h.ID)
		for key, v := range values {
			k.add(key, v)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	k := c.touch(h.ID)
	get := func(key string) any { return k.byKey[key] }
	d, err := h.deliberation(get)
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("events: decode state of %s: %w", h.ID, err)
	}
	return d, nil
}

// work returns every work entry of the header: its own and those of its
// segments (nil for a segment not loaded).
func (h *headerV2) work(get func(string) any) ([]workV2, error) {
	out := slices.Clone(h.Work)
	for _, seg := range h.Segments {
		ws, ok := get(seg).([]workV2)
		if !ok {
			return nil, council.Invalidf("segment record %q missing", seg)
		}
		out = append(out, ws...)
	}
	return out, nil
}

// recordKeys are the records h names: the task, the segments, the
// records of its work and of the loaded segments' work, the result's.
func (h *headerV2) recordKeys(get func(string) any) []string {
	keys := []string{h.Task}
	keys = append(keys, h.Segments...)
	work := slices.Clone(h.Work)
	for _, seg := range h.Segments {
		if ws, ok := get(seg).([]workV2); ok {
			work = append(work, ws...)
		}
	}
	for _, w := range work {
		if w.R != "" {
			keys = append(keys, w.Key+"."+w.R)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(h.Proposals)) {
		keys = append(keys, h.Proposals[k])
	}
	for _, k := range slices.Sorted(maps.Keys(h.Critiques)) {
		keys = append(keys, h.Critiques[k])
	}
	if r := h.Result; r != nil {
		for _, rk := range r.Ranking {
			keys = append(keys, rk.Proposal)
			keys = append(keys, rk.Critiques...)
		}
		keys = append(keys, r.History...)
		keys = append(keys, r.Reviews...)
	}
	return keys
}

// decodeRecord reads the record under key: the task, a proposal (p.…) or a
// critique (c.…).
func decodeRecord(key string, b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	switch {
	case strings.HasPrefix(key, "task."):
		var r Request
		if err := dec.Decode(&r); err != nil {
			return nil, council.Invalidf("record %s: %v", key, err)
		}
		return r.task()
	case strings.HasPrefix(key, "seg."):
		var seg segmentRecord
		if err := dec.Decode(&seg); err != nil {
			return nil, council.Invalidf("record %s: %v", key, err)
		}
		return seg.Work, nil
	case strings.HasPrefix(key, "p."), council.IsJudgeKey(key):
		var p proposalRecord
		if err := dec.Decode(&p); err != nil {
			return nil, council.Invalidf("record %s: %v", key, err)
		}
		return council.Proposal{
			AgentID: p.AgentID, Role: p.Role, Stage: p.Stage, Content: p.Content, Reasoning: p.Reasoning,
			Model: p.Model, Usage: p.Usage.usage(), Duration: time.Duration(p.DurationNS), Attempt: p.Attempt,
			StartedAt: p.StartedAt,
		}, nil
	case strings.HasPrefix(key, "c."):
		var c critiqueRecord
		if err := dec.Decode(&c); err != nil {
			return nil, council.Invalidf("record %s: %v", key, err)
		}
		return council.Critique{
			ReviewerID: c.ReviewerID, AuthorID: c.AuthorID, Stage: c.Stage, Scores: c.Scores, Overall: c.Overall,
			Strengths: c.Strengths, Issues: c.Issues, Suggestions: c.Suggestions,
			Model: c.Model, Usage: c.Usage.usage(), Duration: time.Duration(c.DurationNS), Attempt: c.Attempt,
			StartedAt: c.StartedAt, Confidence: c.Confidence,
		}, nil
	}
	return nil, council.Invalidf("record key %q: want task.…, seg.…, p.…, j.… or c.…", key)
}

// deliberation builds the domain value; get returns the record under a key.
func (h *headerV2) deliberation(get func(string) any) (*council.Deliberation, error) {
	task, ok := get(h.Task).(council.Task)
	if !ok {
		return nil, council.Invalidf("task record %q missing", h.Task)
	}
	d := &council.Deliberation{
		ID: h.ID, Task: cloneTask(task), Status: council.Status(h.Status), Stage: h.Stage, Phase: council.Phase(h.Phase),
		StartedAt: h.StartedAt, Deadline: h.Deadline, FinishedAt: timeOrZero(h.FinishedAt),
		Work: make(map[string]*council.Work, len(h.Work)), Proposals: map[string]council.Proposal{}, Critiques: map[string]council.Critique{},
		Failures: failuresOfV2(h.Failures), Reason: h.Reason, Outbox: slices.Clone(h.Outbox),
		Calls: h.Calls, Review: h.Review.state(),
	}
	if len(d.Outbox) == 0 {
		d.Outbox = nil
	}
	work, err := h.work(get)
	if err != nil {
		return nil, err
	}
	for _, wv := range work {
		w, err := parseWorkKey(wv.Key)
		if err != nil {
			return nil, err
		}
		w.State, w.Attempt, w.LastError = council.WorkState(wv.State), wv.Attempt, wv.LastError
		w.RequestedAt = h.StartedAt.Add(time.Duration(wv.T))
		d.Work[wv.Key] = &w
		if wv.R == "" {
			continue
		}
		rec := wv.Key + "." + wv.R
		switch v := get(rec).(type) {
		case council.Proposal:
			d.Proposals[wv.Key] = v
		case council.Critique:
			d.Critiques[wv.Key] = cloneCritique(v)
		default:
			return nil, council.Invalidf("record %q of work %s missing", rec, wv.Key)
		}
	}
	for key, rec := range h.Proposals {
		p, ok := get(rec).(council.Proposal)
		if !ok {
			return nil, council.Invalidf("proposal record %q missing", rec)
		}
		d.Proposals[key] = p
	}
	for key, rec := range h.Critiques {
		c, ok := get(rec).(council.Critique)
		if !ok {
			return nil, council.Invalidf("critique record %q missing", rec)
		}
		d.Critiques[key] = cloneCritique(c)
	}
	if j := h.Job; j != nil {
		d.Job = &council.JobRef{
			SubmissionID: j.SubmissionID, Attempt: j.Attempt, State: council.JobState(j.State),
			SubmittedAt: j.SubmittedAt, EndedAt: timeOrZero(j.EndedAt), Message: j.Message,
			LogTail: j.LogTail, LogsRecorded: j.LogsRecorded, Deleted: j.Deleted, Pool: j.Pool,
		}
	}
	if r := h.Result; r != nil {
		res := council.Result{
			Winner: r.Winner, Failures: failuresOfV2(r.Failures), Usage: r.Usage.usage(), Duration: time.Duration(r.DurationNS),
			Protocol: council.Protocol(r.Protocol), RoundsRun: r.RoundsRun, Votes: domainVotes(r.Votes), Final: r.Final.final(),
			Stopped: r.Stopped, Aggregation: council.Aggregation(r.Aggregation), Agreement: r.Agreement, Raters: r.Raters,
		}
		if pc := r.PromptCache; pc != nil {
			res.PromptCache = council.PromptCache{
				CachedTokenShare: pc.CachedTokenShare, SharedPrefixShare: pc.SharedPrefixShare,
				PromptBytes: pc.PromptBytes, SharedPrefixBytes: pc.SharedPrefixBytes, Unmeasured: pc.Unmeasured,
			}
		}
		for _, rk := range r.Ranking {
			p, ok := get(rk.Proposal).(council.Proposal)
			if !ok {
				return nil, council.Invalidf("proposal record %q missing", rk.Proposal)
			}
			v := council.Ranked{Rank: rk.Rank, Proposal: p, Score: rk.Score, Scores: maps.Clone(rk.Scores), Scored: rk.Scored,
				ScoreSpread: rk.ScoreSpread}
			if v.Scores == nil {
				v.Scores = map[string]float64{}
			}
			for _, key := range rk.Critiques {
				c, ok := get(key).(council.Critique)
				if !ok {
					return nil, council.Invalidf("critique record %q missing", key)
				}
				v.Critiques = append(v.Critiques, cloneCritique(c))
			}
			res.Ranking = append(res.Ranking, v)
		}
		for _, key := range r.History {
			p, ok := get(key).(council.Proposal)
			if !ok {
				return nil, council.Invalidf("proposal record %q missing", key)
			}
			res.History = append(res.History, p)
		}
		for _, key := range r.Reviews {
			c, ok := get(key).(council.Critique)
			if !ok {
				return nil, council.Invalidf("critique record %q missing", key)
			}
			res.Reviews = append(res.Reviews, cloneCritique(c))
		}
		d.Result = &res
	}
	return d, nil
}

// cloneCritique copies the maps and slices of c, so that a caller changing
// the deliberation it gets does not change what the codec remembers.
func cloneCritique(c council.Critique) council.Critique {
	c.Scores = maps.Clone(c.Scores)
	c.Strengths, c.Issues, c.Suggestions = slices.Clone(c.Strengths), slices.Clone(c.Issues), slices.Clone(c.Suggestions)
	if c.Confidence != nil {
		v := *c.Confidence
		c.Confidence = &v
	}
	return c
}

func cloneTask(t council.Task) council.Task {
	t.Agents = slices.Clone(t.Agents)
	t.Constraints.Rubric = slices.Clone(t.Constraints.Rubric)
	t.Constraints.Metadata = maps.Clone(t.Constraints.Metadata)
	return t
}

// firstKeyVersion returns the schema_version a stored value starts with,
// or 0 for a value without one.
func firstKeyVersion(b []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, fmt.Errorf("stored state is not a JSON object")
	}
	tok, err := dec.Token()
	if err != nil {
		return 0, err
	}
	if tok != "schema_version" {
		return 0, nil
	}
	var v int
	if err := dec.Decode(&v); err != nil {
		return 0, fmt.Errorf("schema_version: %w", err)
	}
	return v, nil
}
