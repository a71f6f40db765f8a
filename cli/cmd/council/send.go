package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/host"
	"council.dev/shared/redact"
)

const sendSynopsis = `send [flags] FIXTURE|FILE|-

Sends one structured CloudEvent — a path in the events fixtures (council fixtures
lists them), a JSON file, or - for stdin — either over HTTP to -to (a function, or
the Knative broker ingress http://broker-ingress.knative-eventing.svc.cluster.local/council/council)
or to the local JetStream broker stream with -nats (subject council.events.<type>,
Nats-Msg-Id = the event id). Unless -keep-id, the event gets a fresh id (or -id) and
the current time, so re-sending a request starts a new deliberation. An event of a
council type is first decoded with the events codec: an invalid one is not sent
(-no-validate sends it anyway, to see a function reject it).

Over HTTP it prints the status and the reply event; a 4xx status (the broker would
not retry) or a 5xx (it would) exits 1. With -nats it prints the stream sequence.

Examples:
  council send deliberation.requested.v1/valid/minimal.json -nats nats://127.0.0.1:4222
  council send proposal.requested.v1/valid/stage0.json -to http://127.0.0.1:8080 -mode structured
  council send -no-validate deliberation.requested.v1/invalid/missing_agents.json -to http://127.0.0.1:8080`

func send(ctx context.Context, args []string, s streams) error {
	fl := newFlags("send", sendSynopsis, s)
	to := fl.String("to", "", "URL to POST the event to: a function or the Knative broker ingress")
	natsURL := fl.String("nats", "", "NATS URL: publish to the JetStream broker stream instead of HTTP")
	mode := fl.String("mode", "binary", "HTTP content mode: binary or structured")
	id := fl.String("id", "", "event id to send (default: a fresh unique id)")
	keepID := fl.Bool("keep-id", false, "keep the event's own id (a re-sent request then maps to the same deliberation)")
	noValidate := fl.Bool("no-validate", false, "send even when the events codec rejects the event")
	timeout := fl.Duration("timeout", 5*time.Minute, "how long to wait for the answer (an LLM function answers when its call ends)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usagef("want one FIXTURE, FILE or -, got %d arguments", len(pos))
	case (*to == "") == (*natsURL == ""):
		return usagef("want exactly one of -to URL (HTTP) and -nats URL (JetStream)")
	case *mode != "binary" && *mode != "structured":
		return usagef("-mode %q: want binary or structured", *mode)
	case *id != "" && *keepID:
		return usagef("-id and -keep-id exclude each other")
	}
	e, err := readEvent(pos[0], s.in)
	if err != nil {
		return err
	}
	// A new id is a new event: it gets the time it is sent at.
	switch {
	case *id != "":
		e.SetID(*id)
		e.SetTime(time.Now())
	case !*keepID:
		e.SetID(freshID(time.Now()))
		e.SetTime(time.Now())
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%s: not a valid CloudEvent: %w", pos[0], err)
	}
	if !*noValidate {
		known, err := validate(e)
		if err != nil {
			return fmt.Errorf("%s: %w (not sent; -no-validate sends it anyway)", pos[0], err)
		}
		if !known {
			fmt.Fprintf(s.err, "council send: type %q is not one the events codec decodes: sent unchecked\n", e.Type())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *natsURL != "" {
		opts, err := natsOptions(s.getenv)
		if err != nil {
			return err
		}
		return publish(ctx, *natsURL, e, s.out, opts...)
	}
	return post(ctx, *to, *mode, e, s.out)
}

// describeSent prints what was sent, and for a request the deliberation it
// starts.
func describeSent(w io.Writer, e event.Event, where string) {
	fmt.Fprintf(w, "sent %s id %s to %s\n", e.Type(), e.ID(), where)
	if e.Type() == events.TypeDeliberationRequested {
		fmt.Fprintf(w, "deliberation %s\n", council.DeliberationID(e.Source(), e.ID()))
	}
}

// post sends e to target over HTTP and prints the answer.
func post(ctx context.Context, target, mode string, e event.Event, w io.Writer) error {
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("-to %q: want an http(s) URL", target)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return err
	}
	if mode == "structured" {
		body, err := events.EncodeStructured(e)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", events.ContentTypeStructured)
	} else if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return unreachable("HTTP endpoint", target, err,
			"start the function (e.g. PORT=8080 go run ./functions/generate/cmd/generate), or port-forward the "+
				"Knative broker ingress (kubectl -n knative-eventing port-forward svc/broker-ingress 8080:80) and send to "+
				"http://127.0.0.1:8080/council/council")
	}
	defer func() { _ = resp.Body.Close() }()
	describeSent(w, e, target+" ("+mode+")")
	fmt.Fprintf(w, "HTTP %s\n", resp.Status)
	switch {
	case resp.StatusCode == http.StatusOK:
		reply, err := binding.ToEvent(ctx, cehttp.NewMessageFromHttpResponse(resp))
		if err != nil {
			return fmt.Errorf("%s answered 200 without a valid reply event: %w", target, err)
		}
		body, err := events.EncodeStructured(*reply)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", out.Bytes())
		return nil
	case resp.StatusCode < 300:
		fmt.Fprintln(w, "no reply event")
		return nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(raw))
	if body, err := events.DecodeErrorReply(raw); err == nil && body.Error != "" {
		msg = body.Error
	}
	fmt.Fprintf(w, "%s\n", msg)
	kind := "permanent: the broker sends it to the dead-letter sink without retrying"
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusConflict {
		kind = "transient: the broker retries it, then sends it to the dead-letter sink"
	}
	return fmt.Errorf("%s answered %s (%s): %s", target, resp.Status, kind, msg)
}

// publish sends e to the JetStream broker stream at natsURL.
func publish(ctx context.Context, natsURL string, e event.Event, w io.Writer, opts ...nats.Option) error {
	nc, err := connectNATS(natsURL, "council-send", opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	data, err := events.EncodeStructured(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	topo := natsjs.DefaultTopology()
	subject := topo.EventSubject(e.Type())
	natsURL = redact.URLs(natsURL) // printed below
	ack, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(e.ID()))
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("no JetStream stream captures %s on %s: start the functions with COUNCIL_TRANSPORT=jetstream "+
			"(they create stream %s at start) or create it (docs/deploy.md)", subject, natsURL, topo.EventsStream)
	}
	if err != nil {
		return fmt.Errorf("publish %s to %s: %w", subject, natsURL, err)
	}
	describeSent(w, e, subject+" on "+natsURL)
	if ack.Duplicate {
		fmt.Fprintf(w, "duplicate: stream %s already holds id %s (seq %d); dropped\n", ack.Stream, e.ID(), ack.Sequence)
		return nil
	}
	fmt.Fprintf(w, "stream %s seq %d\n", ack.Stream, ack.Sequence)
	return nil
}

// natsOptions are the NATS credentials and TLS settings of the environment,
// the functions' variables (COUNCIL_NATS_CREDS, COUNCIL_NATS_NKEY,
// COUNCIL_NATS_USER, COUNCIL_NATS_TLS_CA, …; docs/security.md), checked as
// the functions check them.
func natsOptions(getenv func(string) string) ([]nats.Option, error) {
	cfg, err := host.LoadConfig(func(k string) string {
		if strings.HasPrefix(k, "COUNCIL_NATS_") && k != "COUNCIL_NATS_URL" {
			return getenv(k)
		}
		return ""
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return cfg.NATSOptions()
}

// connectNATS connects to url once with opts, failing fast with a message
// that says what to start.
// connectJetStream connects to NATS at url as name, with the credentials
// and TLS settings of the COUNCIL_NATS_* variables (natsOptions), and
// returns the connection and its JetStream.
func connectJetStream(url, name string, getenv func(string) string) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := natsOptions(getenv)
	if err != nil {
		return nil, nil, err
	}
	nc, err := connectNATS(url, name, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func connectNATS(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append(opts, nats.Name(name), nats.Timeout(5*time.Second))...)
	if err != nil {
		return nil, unreachable("NATS", url, err,
			"start NATS with JetStream (nats-server -js, or the local stack: council dev -nats-url URL), or "+
				"port-forward the cluster's (kubectl -n nats-io port-forward svc/nats 4222)")
	}
	return nc, nil
}

// unreachable explains a failed connection to what at url.
func unreachable(what, url string, err error, hint string) error {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	url = redact.URLs(url) // never a credential in an error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s did not answer in time (-timeout): %w", what, url, err)
	case errors.As(err, &opErr), errors.As(err, &dnsErr), errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("cannot reach %s at %s: %w\n  %s", what, url, err, hint)
	}
	return fmt.Errorf("%s %s: %w", what, url, err)
}
