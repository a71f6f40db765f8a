// Package natsjs is everything council does with NATS JetStream: the broker
// stream, the token streams and the deliberation KV bucket ([Setup]), the
// event publisher ([Publisher], a council.Emitter), the deliberation store
// ([Store], a council.Store), the token publisher ([TokenPublisher], a
// council.TokenSink) and the JetStream transport of a function ([Consumer]).
//
// Events travel as CloudEvents 1.0 in structured JSON mode
// (application/cloudevents+json): an event of type T is published on
// council.events.T with its id as Nats-Msg-Id, so that the broker stream drops
// a re-sent event inside its duplicate window. An event's trace context (the
// CloudEvents distributed-tracing extension) is also set as the NATS headers
// traceparent and tracestate, and a message with the headers only gives its
// event the extension; WithObserver reports queue lag and duplicates dropped.
//
// A message the Consumer terminates is first copied, with its reason, to the
// dead-letter stream (Topology.DLQStream, COUNCIL_DLQ; DeadLetter,
// ListDeadLetters, GetDeadLetter, ReplayDeadLetter).
//
// Errors wrap the council sentinels, NATS's own classified by
// natserr.Classify: council.ErrInvalid for input that can
// never be processed, council.ErrNotFound and council.ErrConflict for the
// store, council.ErrUnavailable when NATS cannot take or give the data.
package natsjs
