package telemetry

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"council.dev/shared/council"
)

// Completer wraps c: each LLM call is a client span "chat <model>" with the
// GenAI semantic conventions, timed and counted with its tokens and
// retries. defaultModel is the model c uses when a request names none
// (COUNCIL_LLM_MODEL). Methods of c beyond Complete that the functions look
// for (Ping) stay reachable.
func (t *Telemetry) Completer(c council.Completer, defaultModel string) council.Completer {
	if t == nil || c == nil {
		return c
	}
	tc := &completer{next: c, t: t, model: defaultModel}
	if p, ok := c.(pinger); ok {
		return &pingCompleter{completer: tc, p: p}
	}
	return tc
}

type pinger interface{ Ping(context.Context) error }

type completer struct {
	next  council.Completer
	t     *Telemetry
	model string
}

type pingCompleter struct {
	*completer
	p pinger
}

// Ping asks the wrapped client whether the server answers.
func (c *pingCompleter) Ping(ctx context.Context) error { return c.p.Ping(ctx) }

// attemptsKey holds the attempts of the LLM call in progress, for the
// transport Transport wraps.
type attemptsKey struct{}

type attempts struct {
	n    atomic.Int32
	span trace.Span
	t    *Telemetry
	set  metric.MeasurementOption
}

func (c *completer) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	start := time.Now()
	model := req.Model
	if model == "" {
		model = c.model
	}
	ctx, span := c.t.start(ctx, "chat "+model, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(
			semconv.GenAIOperationNameChat,
			semconv.GenAIProviderNameOpenAI, // the OpenAI-compatible API (vLLM, llama.cpp server)
			semconv.GenAIRequestModel(model),
		)
		if req.MaxTokens > 0 {
			span.SetAttributes(semconv.GenAIRequestMaxTokens(req.MaxTokens))
		}
		if req.Temperature > 0 {
			span.SetAttributes(semconv.GenAIRequestTemperature(req.Temperature))
		}
		if req.Seed != nil {
			span.SetAttributes(semconv.GenAIRequestSeed(int(*req.Seed)))
		}
		if req.Schema != nil {
			span.SetAttributes(semconv.GenAIOutputTypeJSON)
		}
		if a, ok := ctx.Value(agentKey{}).(agent); ok {
			span.SetAttributes(semconv.GenAIAgentID(a.ID), semconv.GenAIAgentName(agentName(a)))
		}
	}
	at := &attempts{span: span, t: c.t, set: c.t.set("model", model)}
	out, err := c.next.Complete(context.WithValue(ctx, attemptsKey{}, at), req)

	outcome := "ok"
	durKV := []string{string(semconv.GenAIOperationNameKey), "chat", string(semconv.GenAIRequestModelKey), model}
	if err != nil {
		outcome = "error"
		et := errorType(err)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		durKV = append(durKV, string(semconv.ErrorTypeKey), et)
	} else {
		if out.Model != "" {
			durKV = append(durKV, string(semconv.GenAIResponseModelKey), out.Model)
		}
		if span.IsRecording() {
			span.SetAttributes(
				semconv.GenAIResponseModel(out.Model),
				semconv.GenAIUsageInputTokens(out.Usage.PromptTokens),
				semconv.GenAIUsageOutputTokens(out.Usage.CompletionTokens),
				semconv.GenAIUsageCacheReadInputTokens(out.Usage.CachedTokens),
			)
			if out.FinishReason != "" {
				span.SetAttributes(semconv.GenAIResponseFinishReasons(out.FinishReason))
			}
		}
		c.addTokens(ctx, model, "prompt", out.Usage.PromptTokens)
		c.addTokens(ctx, model, "completion", out.Usage.CompletionTokens)
		c.addTokens(ctx, model, "cached", out.Usage.CachedTokens)
	}
	if n := at.n.Load(); n > 1 {
		span.SetAttributes(attribute.Int("council.llm.attempts", int(n)))
	}
	span.End()
	c.t.m.llmDur.Record(ctx, time.Since(start).Seconds(), c.t.set(durKV...))
	c.t.m.llmCalls.Add(ctx, 1, c.t.set("model", model, "outcome", outcome))
	return out, err
}

func (c *completer) addTokens(ctx context.Context, model, typ string, n int) {
	if n > 0 {
		c.t.m.tokens.Add(ctx, int64(n), c.t.set("model", model, "type", typ))
	}
}

// Transport wraps rt, the transport of the LLM client
// (vllm.WithTransportWrap), to tell the span of the LLM call in progress
// about each HTTP attempt: the second and later are retries (span event
// "gen_ai.retry", council_llm_retries_total), a failed one is an event
// "gen_ai.attempt.failed" with its status or error.
func Transport(rt http.RoundTripper) http.RoundTripper { return attemptTransport{rt} }

type attemptTransport struct{ rt http.RoundTripper }

func (a attemptTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	at, _ := r.Context().Value(attemptsKey{}).(*attempts)
	if at != nil {
		if n := at.n.Add(1); n > 1 {
			at.t.m.retries.Add(r.Context(), 1, at.set)
			at.span.AddEvent("gen_ai.retry", trace.WithAttributes(attribute.Int("council.llm.attempt", int(n))))
		}
	}
	resp, err := a.rt.RoundTrip(r)
	if at != nil {
		switch {
		case err != nil:
			at.span.AddEvent("gen_ai.attempt.failed", trace.WithAttributes(
				attribute.Int("council.llm.attempt", int(at.n.Load())), semconv.ErrorTypeKey.String(err.Error())))
		case resp.StatusCode >= 400:
			at.span.AddEvent("gen_ai.attempt.failed", trace.WithAttributes(
				attribute.Int("council.llm.attempt", int(at.n.Load())), semconv.HTTPResponseStatusCode(resp.StatusCode)))
		}
	}
	return resp, err
}
