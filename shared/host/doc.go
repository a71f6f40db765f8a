// Package host serves one council function: it turns a Handler — the same
// Handle(ctx, event.Event) (*event.Event, error) that the JetStream consumer
// calls — into a Knative-compatible CloudEvents receiver over HTTP, and it
// holds what every composition root needs besides: the configuration read
// from the environment (LoadConfig), the JSON logger (NewLogger), the signal
// context that starts the drain (SignalContext) and an Emitter that posts
// events to K_SINK (SinkEmitter).
//
// # Routes
//
//	POST /                  one CloudEvent, binary or structured mode; the
//	                        reply event, if any, comes back in binary mode
//	GET  /health/readiness  200 "ok"; 503 once draining or when a check fails
//	GET  /health/liveness   200 "ok" while the process serves
//	GET  /metrics           Prometheus text of Function.Telemetry (open, like
//	                        /health; 503 while starting, 404 without telemetry)
//	(WithRoute)             whatever the function adds, e.g. query routes
//
// # Authentication (docs/security.md)
//
// With WithTokenVerifier (Run: COUNCIL_AUTH_OIDC_AUDIENCE), POST / needs the
// sender's OIDC token (Knative Eventing's, Authorization: Bearer <JWT>):
// none or an invalid one is answered 401, a sender not allowed 403, before
// the event is read; neither is retried. Run puts the routes a function adds
// behind RequireToken when COUNCIL_QUERY_TOKEN is set; /health/* stay open.
// ConnectNATS authenticates with the credentials of Config.NATSAuth, and
// errors name URLs through package redact, never with their credentials.
//
// # Status mapping (the retry API, see StatusFor)
//
// Knative's delivery contract retries 404, 409, 429 and 5xx and gives up on
// any other 4xx, so the receiver answers:
//
//	handler returned (reply, nil)         200 with the reply event
//	handler returned (nil, nil)           202, empty body
//	body larger than the limit            413 (permanent; *http.MaxBytesError)
//	not a CloudEvent / invalid event      400 (council.ErrInvalid)
//	council.ErrInvalid from the handler   400
//	council.ErrNotFound, ErrConflict      422 (permanent; never 404/409, which Knative retries)
//	ErrRateLimited (and not permanent)    429 (retried)
//	council.ErrUnavailable                503 (retried)
//	any other error                       500 (retried: nobody classified it)
//	panic in the handler                  500 "internal error" (logged with its stack; the server keeps serving)
//
// Every error reply carries a small JSON body
// {"error": "<message>", "retryable": <bool>}, where retryable is true for
// 429 and 5xx.
//
// The receiver is a thin handler over the sdk-go binding package
// (cehttp.NewMessage, binding.ToEvent, cehttp.WriteResponseWriter) rather
// than client.NewHTTPReceiveHandler: the sdk's receive handler answers a
// request that is not a CloudEvent with 415 or 500, writes error text without
// a content type, and cannot carry our JSON error body or our status mapping.
//
// A panic is answered 500, so the broker retries it and, when it panics
// every time, moves it to the dead-letter sink after the configured retries;
// a 4xx would drop the evidence of a bug on the first try.
package host
