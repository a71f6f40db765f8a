// Package telemetry is council's OpenTelemetry: traces that follow a
// deliberation across events, and metrics, as decorators of the ports
// (council.Completer, council.Store, council.Emitter, council.Timer) and of
// a function's event handler, so that the domain stays free of it. The
// composition roots (shared/host, each function's wire.go, cli/stack) build
// one Telemetry per function and wrap what they build with it; a nil
// *Telemetry wraps nothing.
//
// # Traces
//
// The W3C trace context travels in every event as the CloudEvents
// distributed-tracing extension (traceparent, tracestate): on HTTP in the
// ce-traceparent header (binary mode) or the JSON (structured mode), on
// JetStream inside the structured event (and as NATS headers). Handler
// extracts it from each event and starts a consumer span, "process <type>",
// child of the span that sent the event; its reply event, and every event
// the handler emits through Emitter ("send <type>", a producer span), carry
// the new context on. A deliberation is thus one trace: the request, the
// fan-out, every proposal and critique with its LLM call, the completion.
//
// Completer makes one client span per LLM call, "chat <model>", with the
// OpenTelemetry GenAI semantic conventions: gen_ai.operation.name,
// gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model,
// gen_ai.usage.input_tokens, gen_ai.usage.output_tokens,
// gen_ai.usage.cache_read.input_tokens, gen_ai.agent.id and
// gen_ai.agent.name (the agent and role of the work event being handled),
// gen_ai.response.finish_reasons; each retry of the call (an HTTP attempt
// after the first, seen by Transport, the wrapper of the LLM client's transport) is a span event
// "gen_ai.retry". Store makes one span per store operation.
//
// Spans are exported with OTLP over HTTP (http/protobuf) when Config says so
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER; docs/CONVENTIONS.md).
// Off, the tracer is OpenTelemetry's no-op: a span costs a context lookup,
// and an incoming trace context is still passed on unchanged.
//
// # Metrics
//
// Always on, served as Prometheus text by MetricsHandler (GET /metrics of
// every function) and, when Config says so, pushed with OTLP too:
//
//	council_events_handled_total{function,type,outcome}       events handled (outcome: ok, replied, retry, rejected)
//	council_event_duration_seconds{function,type,outcome}      handler latency (histogram)
//	gen_ai_client_operation_duration_seconds{...}             LLM call latency (histogram; gen_ai.request.model, error.type)
//	council_llm_calls_total{function,model,outcome}           LLM calls (outcome: ok, error)
//	council_llm_tokens_total{function,model,type}             tokens (type: prompt, completion, cached)
//	council_llm_retries_total{function,model}                 retried LLM attempts
//	council_duplicates_dropped_total{function,type}           events the broker dropped as duplicates (Nats-Msg-Id)
//	council_deliberations_ended_total{function,outcome}       deliberations ended (completed, failed, cancelled)
//	council_deliberation_duration_seconds{function,outcome}   from start to end (histogram)
//	council_queue_pending{function,consumer}                  JetStream consumer's NumPending at its last message (queue lag)
//
// No package-level state: every Telemetry has its own providers and
// Prometheus registry, so that the local stack runs three functions in one
// process with their own figures.
package telemetry
