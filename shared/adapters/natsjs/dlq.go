package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// Headers of a dead letter. The message's data is the terminated message's
// data, untouched.
const (
	HeaderDLQConsumer  = "Council-Dlq-Consumer"
	HeaderDLQOutcome   = "Council-Dlq-Outcome"
	HeaderDLQReason    = "Council-Dlq-Reason"
	HeaderDLQSubject   = "Council-Dlq-Subject"
	HeaderDLQStreamSeq = "Council-Dlq-Stream-Seq"
	HeaderDLQDelivered = "Council-Dlq-Delivered"
	HeaderDLQEventID   = "Council-Dlq-Event-Id"
	HeaderDLQEventType = "Council-Dlq-Event-Type"
	HeaderDLQTime      = "Council-Dlq-Time"
)

// maxDLQReason bounds the reason kept with a dead letter.
const maxDLQReason = 4096

// DeadLetter is an event a Consumer terminated, as the dead-letter stream
// holds it.
type DeadLetter struct {
	// Seq is the dead letter's sequence in the dead-letter stream: what
	// GetDeadLetter and ReplayDeadLetter take.
	Seq uint64
	// Time is when the consumer terminated the event.
	Time time.Time
	// Consumer is the durable consumer (the function) that terminated it.
	Consumer string
	// Outcome says why: rejected (not a valid CloudEvent), terminated (a
	// permanent error), panic (the handler panicked) or exhausted (a
	// transient error on the last delivery).
	Outcome string
	// Reason is the error, as logged.
	Reason string
	// Subject and StreamSeq locate the original message in the broker
	// stream; Delivered is how many times it had been delivered.
	Subject   string
	StreamSeq uint64
	Delivered uint64
	// EventID and EventType are the CloudEvent's, when it was one.
	EventID, EventType string
	// Data is the original message's data: the structured CloudEvent.
	Data []byte
}

// deadLetter is what the consumer knows of a message it terminates.
type deadLetter struct {
	outcome, reason    string
	eventID, eventType string
	delivered, seq     uint64
}

// publishDeadLetter copies msg with its reason to the dead-letter stream,
// with Nats-Msg-Id <stream>.<seq>, so that a message terminated twice (a
// redelivery raced the term) is one dead letter. It returns an error when
// the stream does not acknowledge it.
func (c *Consumer) publishDeadLetter(ctx context.Context, msg jetstream.Msg, dl deadLetter) error {
	t := c.o.topology
	out := &nats.Msg{Subject: t.DLQSubject(c.cfg.Durable), Data: msg.Data(), Header: nats.Header{}}
	if ct := msg.Headers().Get("Content-Type"); ct != "" {
		out.Header.Set("Content-Type", ct)
	}
	reason := headerValue(dl.reason, maxDLQReason)
	out.Header.Set(HeaderDLQConsumer, c.cfg.Durable)
	out.Header.Set(HeaderDLQOutcome, dl.outcome)
	out.Header.Set(HeaderDLQReason, reason)
	out.Header.Set(HeaderDLQSubject, msg.Subject())
	out.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(dl.seq, 10))
	out.Header.Set(HeaderDLQDelivered, strconv.FormatUint(dl.delivered, 10))
	out.Header.Set(HeaderDLQTime, c.o.now().UTC().Format(time.RFC3339Nano))
	if dl.eventID != "" {
		out.Header.Set(HeaderDLQEventID, dl.eventID)
		out.Header.Set(HeaderDLQEventType, dl.eventType)
	}
	id := t.EventsStream + "." + strconv.FormatUint(dl.seq, 10)
	if dl.seq == 0 {
		id = "" // no metadata: no dedupe
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := c.js.PublishMsg(pctx, out, opts...); err != nil {
		return fmt.Errorf("dead letter to %s: %w", t.DLQStream, classify(err))
	}
	return nil
}

// ListDeadLetters returns up to limit dead letters of t's dead-letter
// stream, oldest first, from sequence from on (0: the first one kept);
// consumer, when not empty, keeps only that consumer's. It returns an error
// wrapping council.ErrUnavailable when NATS does not answer and
// council.ErrInvalid when the stream does not exist (run Setup).
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, t Topology, consumer string, from uint64, limit int) ([]DeadLetter, error) {
	t = t.withDefaults()
	if limit <= 0 {
		return nil, council.Invalidf("natsjs: dead letters: limit %d: must be positive", limit)
	}
	filter := t.DLQSubjectPrefix + ".>"
	if consumer != "" {
		if !validID(consumer) {
			return nil, council.Invalidf("natsjs: dead letters: consumer %q: want letters, digits, '-' and '_'", consumer)
		}
		filter = t.DLQSubject(consumer)
	}
	s, err := js.Stream(ctx, t.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("natsjs: dead letters: stream %s: %w", t.DLQStream, classify(err))
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("natsjs: dead letters: %w", classify(err))
	}
	if info.State.Msgs == 0 || (from > 0 && from > info.State.LastSeq) {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("natsjs: dead letters: %w", classify(err))
	}
	var out []DeadLetter
	for len(out) < limit {
		batch, err := cons.Fetch(min(limit-len(out), 256), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("natsjs: dead letters: %w", classify(err))
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			out = append(out, deadLetterOf(md.Sequence.Stream, m.Headers(), m.Data()))
			if md.NumPending == 0 {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("natsjs: dead letters: %w", classify(err))
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// GetDeadLetter returns the dead letter at sequence seq. It returns an
// error wrapping council.ErrNotFound when there is none.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, t Topology, seq uint64) (DeadLetter, error) {
	t = t.withDefaults()
	s, err := js.Stream(ctx, t.DLQStream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("natsjs: dead letter %d: stream %s: %w", seq, t.DLQStream, classify(err))
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("natsjs: dead letter %d: %w", seq, council.ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("natsjs: dead letter %d: %w", seq, classify(err))
	}
	return deadLetterOf(m.Sequence, m.Header, m.Data), nil
}

// ReplayDeadLetter publishes the original message of dead letter seq again
// on its broker subject, unchanged (the same CloudEvent, the same id: the
// functions' idempotency applies), with Nats-Msg-Id <event id>.replay.<seq>
// so that replaying the same dead letter twice within the duplicate window
// publishes it once. It returns the dead letter and the error of
// GetDeadLetter, or one wrapping council.ErrInvalid when the dead letter
// names no subject of t's broker stream.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, t Topology, seq uint64) (DeadLetter, error) {
	t = t.withDefaults()
	dl, err := GetDeadLetter(ctx, js, t, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	prefix := t.EventsSubjectPrefix + "."
	if len(dl.Subject) <= len(prefix) || dl.Subject[:len(prefix)] != prefix || !validSubject(dl.Subject) {
		return dl, council.Invalidf("natsjs: replay %d: subject %q is not one of the broker stream's (%s>)", seq, dl.Subject, prefix)
	}
	msg := &nats.Msg{Subject: dl.Subject, Data: dl.Data, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentTypeCloudEventsJSON)
	id := dl.EventID
	if id == "" {
		id = "dlq"
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id+".replay."+strconv.FormatUint(seq, 10))); err != nil {
		return dl, fmt.Errorf("natsjs: replay %d: %w", seq, classify(err))
	}
	return dl, nil
}

// headerValue makes s a valid header value of at most n bytes: valid UTF-8,
// control characters (a multi-line error) turned into spaces.
func headerValue(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

func deadLetterOf(seq uint64, h nats.Header, data []byte) DeadLetter {
	num := func(k string) uint64 {
		n, _ := strconv.ParseUint(h.Get(k), 10, 64)
		return n
	}
	at, _ := time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime))
	return DeadLetter{
		Seq: seq, Time: at, Consumer: h.Get(HeaderDLQConsumer), Outcome: h.Get(HeaderDLQOutcome),
		Reason: h.Get(HeaderDLQReason), Subject: h.Get(HeaderDLQSubject), StreamSeq: num(HeaderDLQStreamSeq),
		Delivered: num(HeaderDLQDelivered), EventID: h.Get(HeaderDLQEventID), EventType: h.Get(HeaderDLQEventType),
		Data: data,
	}
}
