package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"council.dev/shared/adapters/natsjs"
)

const dlqSynopsis = `dlq list|show|replay -nats URL [flags] [SEQ]

The dead-letter stream (COUNCIL_DLQ, subjects council.dlq.<consumer>) holds every
event a function's JetStream consumer terminated — not a CloudEvent (rejected), a
permanent error (terminated), a panic, or a transient error on its last delivery
(exhausted) — with the reason and the original message.

  council dlq list -nats URL [-consumer generate] [-from SEQ] [-limit 50]
  council dlq show -nats URL SEQ       the dead letter, its reason and the original event
  council dlq replay -nats URL SEQ     publish the original event again on the broker
                                       (same event, same id: the functions' idempotency
                                       applies; replaying it twice publishes it once)`

func dlq(ctx context.Context, args []string, s streams) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		return usagef("dlq needs a subcommand: list, show or replay")
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" {
		fmt.Fprintf(s.out, "Usage: council %s\n", dlqSynopsis)
		return nil
	}
	fl := newFlags("dlq "+sub, dlqSynopsis, s)
	natsURL := fl.String("nats", envOr(s.getenv, "COUNCIL_NATS_URL", ""), "NATS URL (default $COUNCIL_NATS_URL)")
	stream := fl.String("stream", natsjs.DefaultDLQStream, "the dead-letter stream")
	consumer := fl.String("consumer", "", "list: only the dead letters of this consumer (execute, generate, critique)")
	from := fl.Uint64("from", 0, "list: from this sequence on (0: the oldest kept)")
	limit := fl.Int("limit", 50, "list: at most this many")
	jsonOut := fl.Bool("json", false, "show: print the dead letter as JSON")
	timeout := fl.Duration("timeout", 10*time.Second, "give up after this long")
	pos, err := parseFlags(fl, args[1:])
	if err != nil {
		return err
	}
	var seq uint64
	switch sub {
	case "list":
		if len(pos) != 0 {
			return usagef("dlq list: unexpected arguments %q", pos)
		}
		if *limit < 1 {
			return usagef("dlq list: -limit %d: must be at least 1", *limit)
		}
	case "show", "replay":
		if len(pos) != 1 {
			return usagef("dlq %s takes one dead-letter sequence number (council dlq list shows them)", sub)
		}
		if seq, err = strconv.ParseUint(pos[0], 10, 64); err != nil || seq == 0 {
			return usagef("dlq %s: %q is not a sequence number", sub, pos[0])
		}
	default:
		return usagef("dlq: unknown subcommand %q: want list, show or replay", sub)
	}
	if *natsURL == "" {
		return usagef("-nats URL is required (or set COUNCIL_NATS_URL)")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, js, err := connectJetStream(*natsURL, "council-dlq", s.getenv)
	if err != nil {
		return err
	}
	defer nc.Close()
	topo := natsjs.DefaultTopology()
	topo.DLQStream = *stream

	switch sub {
	case "list":
		dls, err := natsjs.ListDeadLetters(ctx, js, topo, *consumer, *from, *limit)
		if err != nil {
			return err
		}
		if len(dls) == 0 {
			fmt.Fprintln(s.out, "no dead letters")
			return nil
		}
		w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SEQ\tTIME\tCONSUMER\tOUTCOME\tEVENT\tTYPE\tREASON")
		for _, dl := range dls {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", dl.Seq, dl.Time.Format(time.RFC3339), dl.Consumer,
				dl.Outcome, orDash(dl.EventID), orDash(dl.EventType), shorten(dl.Reason, 100))
		}
		return w.Flush()
	case "show":
		dl, err := natsjs.GetDeadLetter(ctx, js, topo, seq)
		if err != nil {
			return err
		}
		if *jsonOut {
			return printDeadLetterJSON(s, dl)
		}
		fmt.Fprintf(s.out, "seq:        %d\ntime:       %s\nconsumer:   %s\noutcome:    %s\nreason:     %s\n"+
			"subject:    %s (stream seq %d, delivered %d times)\nevent:      %s %s\n\n%s\n",
			dl.Seq, dl.Time.Format(time.RFC3339Nano), dl.Consumer, dl.Outcome, dl.Reason,
			dl.Subject, dl.StreamSeq, dl.Delivered, orDash(dl.EventID), dl.EventType, dl.Data)
		return nil
	default: // replay
		dl, err := natsjs.ReplayDeadLetter(ctx, js, topo, seq)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "replayed dead letter %d: event %s (%s) published again on %s\n",
			dl.Seq, orDash(dl.EventID), orDash(dl.EventType), dl.Subject)
		return nil
	}
}

func printDeadLetterJSON(s streams, dl natsjs.DeadLetter) error {
	var data any = string(dl.Data)
	if json.Valid(dl.Data) {
		data = json.RawMessage(dl.Data)
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"seq": dl.Seq, "time": dl.Time, "consumer": dl.Consumer, "outcome": dl.Outcome, "reason": dl.Reason,
		"subject": dl.Subject, "stream_seq": dl.StreamSeq, "delivered": dl.Delivered,
		"event_id": dl.EventID, "event_type": dl.EventType, "data": data,
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
