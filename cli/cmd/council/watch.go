package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

const watchSynopsis = `watch -nats URL [flags]

Follows the council events on the JetStream broker stream (council.events.>), one
line per event — time, type, deliberation, key or agent, outcome — and a progress
line per deliberation after each step:

  progress dlb-… generated 3/3 · critiqued 3/3 · revised 3/3 · reviewed 3/3

(critiqued: critiques of the proposals to revise; reviewed: the final review).
With -tokens it also prints the agents' token streams (council.stream.<id>.>),
each line prefixed with its agent. It stops on Ctrl-C or, with -until-done, when
the deliberation ends (exit 1 if it failed).

On Knative the broker's events live in the NatsJetStreamChannel's own stream, not
in council.events.>: there, watch shows the token streams; query execute (council
status) for the rest.`

func watch(ctx context.Context, args []string, s streams) error {
	fl := newFlags("watch", watchSynopsis, s)
	natsURL := fl.String("nats", envOr(s.getenv, "COUNCIL_NATS_URL", ""), "NATS URL (default $COUNCIL_NATS_URL)")
	id := fl.String("deliberation", "", "only this deliberation (dlb-…)")
	tokens := fl.Bool("tokens", false, "also print the agents' token streams")
	untilDone := fl.Bool("until-done", false, "stop when the deliberation (without -deliberation: the first one seen to end) completes, fails or is cancelled")
	since := fl.String("since", "", `where to start: "all" (the whole stream), "new", or a duration such as 10m (default: all with -deliberation, else new)`)
	timeout := fl.Duration("timeout", 0, "give up after this long (0: never)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 0:
		return usagef("unexpected arguments %q", pos)
	case *natsURL == "":
		return usagef("-nats URL is required (or set COUNCIL_NATS_URL)")
	case *id != "" && !strings.HasPrefix(*id, "dlb-"):
		return usagef("-deliberation %q: a deliberation id starts with dlb-", *id)
	}
	policy, start, err := deliverFrom(*since, *id != "", time.Now())
	if err != nil {
		return err
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	nc, js, err := connectJetStream(*natsURL, "council-watch", s.getenv)
	if err != nil {
		return err
	}
	defer nc.Close()
	topo := natsjs.DefaultTopology()
	items := make(chan item, 256)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	eventsFilter := topo.EventsSubjectPrefix + ".>"
	if err := follow(ctx, js, topo.EventsStream, eventsFilter, policy, start, false, items); err != nil {
		return fmt.Errorf("watch %s on %s: %w", topo.EventsStream, *natsURL, err)
	}
	if *tokens {
		filter := topo.TokensSubjectPrefix + ".>"
		if *id != "" {
			filter = topo.TokensSubjectPrefix + "." + *id + ".>"
		}
		if err := follow(ctx, js, topo.TokensStream, filter, policy, start, true, items); err != nil {
			return fmt.Errorf("watch %s on %s: %w", topo.TokensStream, *natsURL, err)
		}
	}
	fmt.Fprintf(s.err, "council watch: %s on %s (from %s)\n", eventsFilter, *natsURL, describeSince(policy, start))

	w := newWatcher(s.out, *id, *untilDone)
	w.resolve = func(e event.Event) (event.Event, error) { return natsjs.Resolve(ctx, js, e) }
	for {
		select {
		case <-ctx.Done():
			w.flushTokens()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("gave up after %s (-timeout)", *timeout)
			}
			return nil
		case it := <-items:
			if it.err != nil {
				return it.err
			}
			if it.token {
				w.token(it.data)
				continue
			}
			w.event(it.data)
			if w.done {
				if *tokens {
					// The token stream may trail the events: take what is left.
					drain(items, w, 300*time.Millisecond)
				}
				w.flushTokens()
				if c := w.result; c != nil {
					printResult(s.out, c, time.Duration(c.DurationMS)*time.Millisecond)
				}
				return w.outcome
			}
		}
	}
}

// deliverFrom turns -since into a deliver policy and start time.
func deliverFrom(since string, filtered bool, now time.Time) (jetstream.DeliverPolicy, time.Time, error) {
	switch since {
	case "":
		if filtered {
			return jetstream.DeliverAllPolicy, time.Time{}, nil
		}
		return jetstream.DeliverNewPolicy, time.Time{}, nil
	case "all":
		return jetstream.DeliverAllPolicy, time.Time{}, nil
	case "new":
		return jetstream.DeliverNewPolicy, time.Time{}, nil
	}
	d, err := time.ParseDuration(since)
	if err != nil || d <= 0 {
		return 0, time.Time{}, usagef(`-since %q: want "all", "new" or a positive duration such as 10m`, since)
	}
	return jetstream.DeliverByStartTimePolicy, now.Add(-d), nil
}

func describeSince(p jetstream.DeliverPolicy, start time.Time) string {
	switch p {
	case jetstream.DeliverAllPolicy:
		return "the start of the stream"
	case jetstream.DeliverByStartTimePolicy:
		return start.Format(time.RFC3339)
	}
	return "now"
}

// item is one message read from a stream.
type item struct {
	data  []byte
	token bool
	err   error
}

// follow reads stream through an ordered consumer, filtered on subject,
// into items until ctx ends.
func follow(ctx context.Context, js jetstream.JetStream, stream, subject string, policy jetstream.DeliverPolicy, start time.Time, token bool, items chan<- item) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: policy}
	if policy == jetstream.DeliverByStartTimePolicy {
		cfg.OptStartTime = &start
	}
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no stream %s: start the functions (they create it at start) or create it (docs/deploy.md)", stream)
	}
	if err != nil {
		return err
	}
	it, err := c.Messages()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); it.Stop() }()
	go func() {
		for {
			msg, err := it.Next()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					select {
					case items <- item{err: fmt.Errorf("read %s: %w", stream, err)}:
					case <-ctx.Done():
					}
				}
				return
			}
			select {
			case items <- item{data: msg.Data(), token: token}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// drain hands w the token items that arrive until none has for idle.
func drain(items <-chan item, w *watcher, idle time.Duration) {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case it := <-items:
			if it.err == nil && it.token {
				w.token(it.data)
			}
			t.Reset(idle)
		case <-t.C:
			return
		}
	}
}

// watcher prints events, progress and tokens; it is used by one goroutine.
type watcher struct {
	w         io.Writer
	only      string
	untilDone bool
	// resolve fetches the data of an event sent by reference (the claim
	// check); nil shows such events without it.
	resolve  func(event.Event) (event.Event, error)
	progress map[string]*tally
	tokens   map[string]*strings.Builder
	order    []string

	// done is set when the watched deliberation ended; outcome is nil when
	// it completed.
	done    bool
	outcome error
	result  *events.Completed
}

func newWatcher(w io.Writer, only string, untilDone bool) *watcher {
	return &watcher{w: w, only: only, untilDone: untilDone, progress: map[string]*tally{}, tokens: map[string]*strings.Builder{}}
}

func (w *watcher) event(data []byte) {
	e, err := events.DecodeStructured(data)
	if err != nil {
		fmt.Fprintf(w.w, "%s  (not a CloudEvent: %d bytes)\n", clock(time.Now()), len(data))
		return
	}
	if e.Type() == events.TypeSweepTick || e.Type() == events.TypePing {
		return
	}
	if _, ok := events.OffloadedRef(e); ok && w.resolve != nil {
		if whole, err := w.resolve(e); err == nil {
			e = whole
		}
	}
	d := events.Summarize(e)
	id := d.DeliberationID
	var task *council.Task
	switch e.Type() {
	case events.TypeDeliberationRequested:
		id = council.DeliberationID(e.Source(), e.ID())
		if t, err := events.DecodeRequest(e); err == nil {
			task = &t
		}
	case events.TypeProposalRequested:
		if r, err := events.DecodeProposalRequested(e); err == nil {
			task = &r.Task
		}
	case events.TypeCritiqueRequested:
		if r, err := events.DecodeCritiqueRequested(e); err == nil {
			task = &r.Task
		}
	}
	if w.only != "" && id != w.only {
		return
	}
	p := w.progress[id]
	if p == nil {
		p = &tally{done: map[string]map[string]bool{}}
		w.progress[id] = p
	}
	if task != nil && e.Type() == events.TypeDeliberationRequested {
		// Only the request has every agent: a work event's task carries
		// the calling agent alone (council.Task.For).
		p.learn(*task)
	}
	at := e.Time()
	if at.IsZero() {
		at = time.Now()
	}
	fmt.Fprintf(w.w, "%s  %-26s %s  %s\n", clock(at), events.ShortName(e.Type()), id, w.describe(e, d, task))

	switch e.Type() {
	case events.TypeProposalGenerated:
		if d.Stage == 0 {
			p.mark("generated", d.Key)
		} else {
			p.mark("revised", d.Key)
		}
	case events.TypeCritiqueCompleted:
		if p.known && d.Stage >= p.rounds {
			p.mark("reviewed", d.Key)
		} else {
			p.mark("critiqued", d.Key)
		}
	case events.TypeDeliberationCompleted, events.TypeDeliberationFailed, events.TypeDeliberationCancelled:
		w.ended(e, id)
		return
	default:
		return
	}
	if line := p.line(); line != p.last {
		p.last = line
		fmt.Fprintf(w.w, "%s  %-26s %s  %s\n", clock(at), "progress", id, line)
	}
}

// describe is the key/agent and outcome part of an event line.
func (w *watcher) describe(e event.Event, d events.Summary, task *council.Task) string {
	if line, ok := describeControl(e); ok {
		return line
	}
	switch e.Type() {
	case events.TypeDeliberationRequested:
		if task == nil {
			_, err := events.DecodeRequest(e)
			return fmt.Sprintf("invalid request: %v", err)
		}
		return fmt.Sprintf("task %s · %s · %d agent(s) · %d round(s) · backend %s",
			task.ID, task.Kind, len(task.Agents), task.Constraints.Rounds, orDefault(string(task.Backend), "functions"))
	case events.TypeDeliberationAccepted:
		return fmt.Sprintf("%s (backend %s)", d.Status, orDefault(d.Backend, "functions"))
	case events.TypeProposalRequested, events.TypeCritiqueRequested:
		return fmt.Sprintf("%s attempt %d", d.Key, d.Attempt)
	case events.TypeProposalGenerated:
		if d.Proposal != nil {
			return fmt.Sprintf("%s · %d tokens · %dms", d.Key, d.Proposal.Usage.TotalTokens, d.Proposal.DurationMS)
		}
	case events.TypeCritiqueCompleted:
		if d.Critique != nil {
			return fmt.Sprintf("%s · %s → %s overall %.2f · %dms", d.Key, d.Critique.ReviewerID, d.Critique.AuthorID, d.Critique.Overall, d.Critique.DurationMS)
		}
	case events.TypeProposalFailed, events.TypeCritiqueFailed:
		kind := "permanent"
		if d.Retryable {
			kind = "retryable"
		}
		return fmt.Sprintf("%s attempt %d: %s (%s)", d.Key, d.Attempt, d.Error, kind)
	case events.TypeDeliberationCompleted:
		c, err := events.DecodeCompleted(e)
		if err != nil {
			return fmt.Sprintf("unreadable result: %v", err)
		}
		return fmt.Sprintf("winner %s · %d ranked · %d failed · %d tokens · %s", c.Winner, len(c.Ranking), len(c.Failures),
			c.Usage.TotalTokens, (time.Duration(c.DurationMS) * time.Millisecond).String())
	case events.TypeDeliberationFailed:
		return "reason: " + d.Reason
	}
	return d.Key
}

// ended handles the end of deliberation id.
func (w *watcher) ended(e event.Event, id string) {
	if !w.untilDone {
		return
	}
	w.done = true
	switch e.Type() {
	case events.TypeDeliberationCompleted:
		if c, err := events.DecodeCompleted(e); err == nil {
			w.result = &c
		}
	case events.TypeDeliberationFailed:
		reason := "(unreadable event)"
		if f, err := events.DecodeFailed(e); err == nil {
			reason = f.Reason
		}
		w.outcome = fmt.Errorf("deliberation %s failed: %s", id, reason)
	case events.TypeDeliberationCancelled:
		reason := "(unreadable event)"
		if c, err := events.DecodeCancelled(e); err == nil {
			reason = c.Reason
		}
		w.outcome = fmt.Errorf("deliberation %s %s", id, reason)
	}
}

// token prints the complete lines of a token message, prefixed with the agent.
func (w *watcher) token(data []byte) {
	m, err := events.DecodeToken(data)
	if err != nil {
		return
	}
	prefix := m.AgentID
	if w.only == "" {
		prefix = m.DeliberationID + "/" + m.AgentID
	}
	prefix = fmt.Sprintf("%s s%d", prefix, m.Stage)
	if m.Attempt > 1 {
		// A retried generation streams anew: its text apart from the first's.
		prefix = fmt.Sprintf("%s a%d", prefix, m.Attempt)
	}
	b := w.tokens[prefix]
	if b == nil {
		b = &strings.Builder{}
		w.tokens[prefix] = b
		w.order = append(w.order, prefix)
	}
	b.WriteString(m.Text)
	text := b.String()
	for {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(w.w, "  %s │ %s\n", prefix, text[:i])
		text = text[i+1:]
	}
	if len(text) >= 100 || (m.Final && text != "") {
		fmt.Fprintf(w.w, "  %s │ %s\n", prefix, text)
		text = ""
	}
	b.Reset()
	b.WriteString(text)
}

// flushTokens prints what the token buffers still hold.
func (w *watcher) flushTokens() {
	for _, prefix := range w.order {
		if b := w.tokens[prefix]; b.Len() > 0 {
			fmt.Fprintf(w.w, "  %s │ %s\n", prefix, b.String())
			b.Reset()
		}
	}
}

// tally counts the finished work of one deliberation by work key, so
// that a redelivered event counts once.
type tally struct {
	known                bool
	agents, rounds, peer int
	// final is how many reviewers the final review gives each answer
	// (every other agent under final_review all); protocol is the task's.
	final      int
	protocol   council.Protocol
	singlePass bool
	done       map[string]map[string]bool
	last       string
}

func (p *tally) learn(t council.Task) {
	if p.known {
		return
	}
	p.known = true
	t = t.WithDefaults()
	p.agents, p.rounds, p.peer = len(t.Agents), t.Constraints.Rounds, min(t.Constraints.Peers, len(t.Agents)-1)
	p.final, p.protocol = p.peer, t.Constraints.Protocol
	if t.Constraints.FinalReview == council.FinalReviewAll {
		p.final = len(t.Agents) - 1
	}
	switch p.protocol {
	case council.ProtocolVote, council.ProtocolJudge:
		p.rounds = 0 // one stage of answers (vote's review only without a plurality)
	}
	p.singlePass = t.Kind.SinglePass()
}

func (p *tally) mark(step, key string) {
	if p.done[step] == nil {
		p.done[step] = map[string]bool{}
	}
	p.done[step][key] = true
}

// line is "generated 3/3 · critiqued 3/3 · revised 3/3 · reviewed 3/3";
// a total not known yet (no request or work event seen) is "?".
func (p *tally) line() string {
	total := func(n int) string {
		if !p.known {
			return "?"
		}
		return fmt.Sprint(n)
	}
	part := func(step string, n int) string { return fmt.Sprintf("%s %d/%s", step, len(p.done[step]), total(n)) }
	parts := []string{part("generated", p.agents)}
	if !p.singlePass {
		if !p.known || p.rounds > 0 {
			if p.protocol != council.ProtocolDebate { // debate: answers read, not critiqued, between rounds
				parts = append(parts, part("critiqued", p.agents*p.peer*p.rounds))
			}
			parts = append(parts, part("revised", p.agents*p.rounds))
		}
		if p.protocol != council.ProtocolJudge {
			parts = append(parts, part("reviewed", p.agents*p.final))
		}
	}
	return strings.Join(parts, " · ")
}

func clock(t time.Time) string { return t.Local().Format("15:04:05.000") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
