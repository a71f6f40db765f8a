package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"council.dev/events"
	"council.dev/shared/council"
)

// DefaultSinkTimeout bounds one POST to the sink.
const DefaultSinkTimeout = 30 * time.Second

// DefaultSinkTokenFile is where a SinkBinding mounts the OIDC token for its
// sink's audience when Knative Eventing's authentication-oidc feature is on
// (Eventing's SinkBinding, volume oidc-token at /oidc); the broker ingress
// then answers 401 to a request without it. Without the feature the file
// does not exist and the sink is posted to without a token.
const DefaultSinkTokenFile = "/oidc/token"

// SinkEmitter sends envelopes as CloudEvents in binary mode to one URL, the
// Knative sink (K_SINK, usually the broker ingress), with the SinkBinding's
// OIDC token when there is one (DefaultSinkTokenFile). It does not retry: a
// transient failure is returned as council.ErrUnavailable so that the
// handler that emitted fails and its own event is redelivered.
type SinkEmitter struct {
	target string
	client cloudevents.Client
}

var _ council.Emitter = (*SinkEmitter)(nil)

// SinkOption configures a SinkEmitter.
type SinkOption func(*sinkOptions) error

type sinkOptions struct {
	httpClient *http.Client
	tokenFile  string
}

// WithSinkTokenFile sets the file the bearer token for the sink is read
// from before each request (DefaultSinkTokenFile by default; Eventing
// refreshes it in place); "" sends none.
func WithSinkTokenFile(path string) SinkOption {
	return func(o *sinkOptions) error {
		o.tokenFile = path
		return nil
	}
}

// WithHTTPClient sets the HTTP client; the default has a DefaultSinkTimeout
// timeout.
func WithHTTPClient(c *http.Client) SinkOption {
	return func(o *sinkOptions) error {
		if c == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		o.httpClient = c
		return nil
	}
}

// NewSinkEmitter returns an emitter that posts to target, an absolute http
// or https URL.
func NewSinkEmitter(target string, opts ...SinkOption) (*SinkEmitter, error) {
	if why := checkURL(target, []string{"http", "https"}); why != "" {
		return nil, fmt.Errorf("host: new sink emitter: %w", council.Invalidf("target %q: %s", target, why))
	}
	o := sinkOptions{httpClient: &http.Client{Timeout: DefaultSinkTimeout}, tokenFile: DefaultSinkTokenFile}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("host: new sink emitter: %w", council.Invalidf("%v", err))
		}
	}
	hc := *o.httpClient
	if o.tokenFile != "" {
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = sinkTokenTransport{base: base, file: o.tokenFile}
	}
	p, err := cehttp.New(cehttp.WithTarget(target), cehttp.WithClient(hc))
	if err != nil {
		return nil, fmt.Errorf("host: new sink emitter: %w", err)
	}
	c, err := cloudevents.New(p, cloudevents.WithForceBinary())
	if err != nil {
		return nil, fmt.Errorf("host: new sink emitter: %w", err)
	}
	return &SinkEmitter{target: target, client: c}, nil
}

// Emit posts env as one CloudEvent with JSON data. It returns nil on a 2xx;
// an error wrapping council.ErrUnavailable when the sink cannot be reached or
// answers a status the Knative delivery contract retries (404, 408, 409, 429,
// 5xx; a 429 also wraps ErrRateLimited); one wrapping council.ErrTooLarge
// for a 413 (the event is larger than the broker takes); and an error
// wrapping council.ErrInvalid for an envelope that is not a valid CloudEvent
// or any other 4xx.
func (s *SinkEmitter) Emit(ctx context.Context, env council.Envelope) error {
	e, err := events.CheckedEvent(env)
	if err != nil {
		return fmt.Errorf("host: emit %s: %w", env.ID, err)
	}

	res := s.client.Send(ctx, e)
	if protocol.IsACK(res) {
		return nil
	}
	var hr *cehttp.Result
	if !protocol.ResultAs(res, &hr) {
		// No HTTP answer: connection refused, timeout, cancelled context.
		return fmt.Errorf("host: emit %s to %s: %w: %w", env.ID, s.target, council.ErrUnavailable, res)
	}
	switch code := hr.StatusCode; {
	case code == http.StatusRequestEntityTooLarge:
		// The broker's limit (Knative has no claim check here): permanent,
		// named, so the deliberation fails at once rather than at its deadline.
		return fmt.Errorf("host: emit %s: %w", env.ID, council.TooLargef(
			"the sink answered 413 to event %s of %d bytes of data (the broker's size limit)", env.ID, len(env.Data)))
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("host: emit %s: sink answered %d: %w: %w", env.ID, code, council.ErrUnavailable, ErrRateLimited)
	case retryableStatus(code):
		return fmt.Errorf("host: emit %s: sink answered %d: %w: %w", env.ID, code, council.ErrUnavailable, res)
	default:
		return fmt.Errorf("host: emit %s: sink answered %d: %w: %w", env.ID, code, council.ErrInvalid, res)
	}
}

// sinkTokenTransport adds "Authorization: Bearer <token>" to each request,
// the token read from file just before it (the SinkBinding's token is
// rotated in place). A missing or empty file adds nothing; a file that
// cannot be read fails the request, which Emit reports as unavailable.
type sinkTokenTransport struct {
	base http.RoundTripper
	file string
}

func (t sinkTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := os.ReadFile(t.file)
	if errors.Is(err, fs.ErrNotExist) {
		return t.base.RoundTrip(r)
	}
	if err != nil {
		return nil, fmt.Errorf("sink token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}
