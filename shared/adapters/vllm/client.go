// Package vllm is the council.Completer adapter for OpenAI-compatible chat
// completion servers: vLLM in production, llama.cpp's own server (the
// xllamacpp wheel, started by scripts/llm-server.sh) in tests and local runs.
//
// It speaks the OpenAI chat completions API through go-openai, streams when
// asked to, asks for structured output with response_format json_schema,
// retries transient failures with exponential backoff and full jitter, and
// classifies every failure as council.ErrInvalid (permanent) or
// council.ErrUnavailable (transient).
//
// Both servers take the same request: llama.cpp's server answers
// response_format json_schema with its LLGuidance engine, as vLLM does with
// xgrammar or guidance, so tests exercise the request vLLM gets, untranslated.
package vllm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// Client calls an OpenAI-compatible chat completions endpoint. It is safe
// for concurrent use.
type Client struct {
	api          *openai.Client
	defaultModel string
	allowed      []string
	cfg          config
	schemas      sync.Map // schema document → *events.Validator, compiled once
}

var _ council.Completer = (*Client)(nil)

// New returns a Client for the server at baseURL, the API root that ends in
// /v1 (for example http://127.0.0.1:8088/v1). defaultModel is used when a
// request names no model. Options are validated here: a malformed URL, an
// empty model or a bad option is an error.
func New(baseURL, defaultModel string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vllm: new: base URL %q: want http(s)://host[:port]/path", redact.URL(baseURL))
	}
	if defaultModel == "" {
		return nil, errors.New("vllm: new: empty default model")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("vllm: new: %w", err)
		}
	}
	allowed := append([]string{defaultModel}, cfg.allowed...)
	slices.Sort(allowed)
	allowed = slices.Compact(allowed)

	oc := openai.DefaultConfig(cfg.apiKey)
	oc.BaseURL = strings.TrimRight(baseURL, "/")
	if cfg.httpClient == nil {
		cfg.httpClient = newHTTPClient(cfg.maxConns)
		if cfg.wrap != nil {
			cfg.httpClient.Transport = cfg.wrap(cfg.httpClient.Transport)
		}
	}
	// Retry-After is read from the answers themselves (retryafter.go); a
	// zero temperature is written into the body (temperature.go).
	hc := withRetryAfter(cfg.httpClient, time.Now)
	hc.Transport = zeroTemperatureTransport{rt: hc.Transport}
	oc.HTTPClient = hc
	return &Client{
		api:          openai.NewClientWithConfig(oc),
		defaultModel: defaultModel,
		allowed:      allowed,
		cfg:          cfg,
	}, nil
}

// Complete runs one chat completion; see council.Completer for the errors it
// returns.
//
// The model is req.Model, or the default model when that is empty; a model
// outside the allowed list fails with ErrInvalid before any HTTP call.
// Temperature is always sent: 0 asks for greedy decoding (go-openai omits
// a zero temperature; the client writes it back, temperature.go). go-openai
// omits the other zero values, so MaxTokens 0 lets the server generate up
// to its context length.
// req.Schema becomes response_format
// {"type":"json_schema","json_schema":{name, schema, strict}}, and the answer
// is validated against that schema: one that does not follow it (a server
// that ignores the schema, output cut at max tokens) fails with
// ErrBadOutput, which is transient (another sample may follow it), saying
// where it breaks the schema; a schema that does not compile is ErrInvalid.
// Reasoning is the message's reasoning_content (vLLM's reasoning parser,
// DeepSeek); recent vLLM releases name that field "reasoning" instead, which
// go-openai v1.43.0 does not decode, so Reasoning stays empty with them.
//
// With req.OnToken set the completion is streamed: OnToken receives every
// piece of content as it arrives and Content is their concatenation. Usage
// then comes from the stream's final usage chunk (stream_options
// include_usage); a server that sends none gets CompletionTokens counted
// as the number of content chunks (one per token, or fewer when a character
// spans tokens) and PromptTokens 0. A stream that fails after
// OnToken has seen part of it is not retried here, so that no text is
// delivered twice; the error wraps ErrUnavailable for the caller to retry.
//
// Retries. Connection errors, timeouts, 5xx, 408 and 429 are retried; 4xx
// answers other than 408 and 429 fail at once with ErrInvalid and the
// server's message. When ctx has a deadline (the deliberation's), a failing
// call is retried for as long as it leaves time — WithRetries does not bound
// it — so an LLM server that is down or overloaded for less than the time
// left delays the call but does not fail it; each attempt is bounded by
// min(WithTimeout, time left). Without a deadline, at most WithRetries
// retries are made (and at least one attempt on every fallback model).
// The wait before a retry is the exponential backoff with full jitter, or
// the server's Retry-After (seconds or an HTTP date, on 429 and 503) when
// that is longer; a retry whose wait would end past ctx's
// deadline is not made: the call fails at once with ErrInvalid, as the
// deadline cannot move. A cancelled or expired ctx stops retrying and
// returns an error that wraps both ErrUnavailable and ctx.Err().
//
// Fallback models. req.Fallbacks are tried in order after req.Model: an
// attempt that fails with a retryable error moves to the next model at
// once, without waiting; after the last model the client waits (backoff,
// Retry-After) and starts again from req.Model. So the first model stays
// preferred, a fallback answers one failed attempt later, and a server down
// for every model is retried until the deadline as above. Every model must
// be allowed, checked before any HTTP call; Completion.Model is the model
// that answered (as the server names it, else the one asked).
func (c *Client) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	model := req.Model
	if model == "" {
		model = c.defaultModel
	}
	models := []string{model}
	for _, m := range req.Fallbacks {
		if m != "" && !slices.Contains(models, m) {
			models = append(models, m)
		}
	}
	fail := func(err error) (council.Completion, error) {
		return council.Completion{}, fmt.Errorf("vllm: complete: model %s: %w", strings.Join(models, ", then "), err)
	}
	for _, m := range models {
		if _, ok := slices.BinarySearch(c.allowed, m); !ok {
			return fail(council.Invalidf("model %q not allowed (allowed: %s)", m, strings.Join(c.allowed, ", ")))
		}
	}
	oreq, err := buildRequest(model, req)
	if err != nil {
		return fail(err)
	}
	var validator *events.Validator
	if req.Schema != nil {
		if validator, err = c.compile(*req.Schema); err != nil {
			return fail(err)
		}
	}
	deadline, bounded := ctx.Deadline()

	for attempt := 0; ; attempt++ {
		var (
			out       council.Completion
			delivered bool
			hint      retryHint
		)
		oreq.Model = models[attempt%len(models)]
		actx := context.WithValue(ctx, retryHintKey{}, &hint)
		if oreq.Temperature == 0 {
			actx = context.WithValue(actx, zeroTemperatureKey{}, true)
		}
		if req.OnToken != nil {
			out, delivered, err = c.stream(actx, oreq, req.OnToken)
		} else {
			out, err = c.complete(actx, oreq)
		}
		if err == nil {
			if validator != nil {
				if err := followsSchema(validator, req.Schema.Name, out); err != nil {
					return fail(err)
				}
			}
			if out.Model == "" {
				out.Model = oreq.Model
			}
			return out, nil
		}
		err = fmt.Errorf("model %s: %w", oreq.Model, classify(err))
		switch {
		case errors.Is(err, council.ErrInvalid):
			return fail(err)
		case ctx.Err() != nil:
			return fail(fmt.Errorf("%w: %w (last error: %w)", council.ErrUnavailable, ctx.Err(), err))
		case delivered:
			return fail(fmt.Errorf("%w: stream broke after its first token: %w", council.ErrUnavailable, err))
		case !bounded && attempt >= max(c.cfg.retries, len(models)-1):
			// Without a deadline: WithRetries retries, and every model once.
			return fail(fmt.Errorf("%w: after %d attempts: %w", council.ErrUnavailable, attempt+1, err))
		}
		if next := (attempt + 1) % len(models); next != 0 {
			c.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "llm call failed, trying a fallback model",
				slog.String("model", oreq.Model), slog.String("fallback", models[next]),
				slog.Int("attempt", attempt+1), slog.String("error", err.Error()))
			continue
		}
		wait := c.backoff(attempt / len(models))
		if hint.after > wait {
			wait = hint.after
		}
		if left := time.Until(deadline); bounded && wait >= left {
			return fail(fmt.Errorf("%w: %w: after %d attempts, the deadline leaves %s, less than the wait of %s before another: %w",
				council.ErrInvalid, council.ErrUnavailable, attempt+1, left.Round(time.Millisecond), wait.Round(time.Millisecond), err))
		}
		c.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "llm call failed, retrying",
			slog.String("model", oreq.Model), slog.Int("attempt", attempt+1),
			slog.Duration("backoff", wait), slog.Duration("retry_after", hint.after), slog.String("error", err.Error()))
		if serr := c.cfg.sleep(ctx, wait); serr != nil {
			return fail(fmt.Errorf("%w: %w (last error: %w)", council.ErrUnavailable, serr, err))
		}
	}
}

// buildRequest maps a council request onto go-openai's.
func buildRequest(model string, req council.CompletionRequest) (openai.ChatCompletionRequest, error) {
	if len(req.Messages) == 0 {
		return openai.ChatCompletionRequest{}, council.Invalidf("no messages")
	}
	if req.MaxTokens < 0 || req.Temperature < 0 {
		return openai.ChatCompletionRequest{}, council.Invalidf("negative max tokens or temperature")
	}
	msgs := make([]openai.ChatCompletionMessage, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = openai.ChatCompletionMessage{Role: m.Role, Content: m.Content}
	}
	oreq := openai.ChatCompletionRequest{
		Model:       model,
		Messages:    msgs,
		Temperature: float32(req.Temperature),
		// max_tokens, not max_completion_tokens: vLLM reads both,
		// some llama.cpp servers only the former.
		MaxTokens: req.MaxTokens, //nolint:staticcheck // see above
	}
	if req.Seed != nil {
		seed := int(*req.Seed)
		oreq.Seed = &seed
	}
	if s := req.Schema; s != nil {
		if !json.Valid(s.Schema) {
			return openai.ChatCompletionRequest{}, council.Invalidf("schema %q is not valid JSON", s.Name)
		}
		name := s.Name
		if name == "" {
			name = "response"
		}
		oreq.ResponseFormat = &openai.ChatCompletionResponseFormat{
			Type: openai.ChatCompletionResponseFormatTypeJSONSchema,
			JSONSchema: &openai.ChatCompletionResponseFormatJSONSchema{
				Name:   name,
				Schema: json.RawMessage(s.Schema),
				Strict: s.Strict,
			},
		}
	}
	return oreq, nil
}

// complete runs one non-streamed attempt.
func (c *Client) complete(ctx context.Context, oreq openai.ChatCompletionRequest) (council.Completion, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	resp, err := c.api.CreateChatCompletion(ctx, oreq)
	if err != nil {
		return council.Completion{}, err
	}
	if len(resp.Choices) == 0 {
		return council.Completion{}, errEmpty
	}
	ch := resp.Choices[0]
	return council.Completion{
		Content:      ch.Message.Content,
		Reasoning:    ch.Message.ReasoningContent,
		Model:        resp.Model,
		FinishReason: string(ch.FinishReason),
		Usage:        usageOf(resp.Usage),
	}, nil
}

// stream runs one streamed attempt; delivered reports whether onToken has
// been called.
func (c *Client) stream(ctx context.Context, oreq openai.ChatCompletionRequest, onToken func(string)) (out council.Completion, delivered bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	oreq.Stream = true
	oreq.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	s, err := c.api.CreateChatCompletionStream(ctx, oreq)
	if err != nil {
		return out, false, err
	}
	// Close only releases the connection; the stream's outcome is already known.
	defer func() { _ = s.Close() }()

	var (
		content, reasoning strings.Builder
		chunks             int
		usage              *openai.Usage
	)
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, chunks > 0, err
		}
		if resp.Model != "" {
			out.Model = resp.Model
		}
		if resp.Usage != nil {
			usage = resp.Usage
		}
		for _, ch := range resp.Choices {
			if ch.Index != 0 {
				continue
			}
			reasoning.WriteString(ch.Delta.ReasoningContent)
			if d := ch.Delta.Content; d != "" {
				content.WriteString(d)
				chunks++
				onToken(d)
			}
			if ch.FinishReason != "" {
				out.FinishReason = string(ch.FinishReason)
			}
		}
	}
	if out.FinishReason == "" {
		// go-openai reports a connection closed mid-stream as a plain EOF.
		return out, chunks > 0, errTruncated
	}
	out.Content = content.String()
	out.Reasoning = reasoning.String()
	if usage != nil {
		out.Usage = usageOf(*usage)
	} else {
		out.Usage = council.Usage{CompletionTokens: chunks, TotalTokens: chunks}
	}
	return out, chunks > 0, nil
}

// compile returns the validator of s, compiling it on first use.
func (c *Client) compile(s council.JSONSchema) (*events.Validator, error) {
	key := string(s.Schema)
	if v, ok := c.schemas.Load(key); ok {
		return v.(*events.Validator), nil
	}
	v, err := events.CompileSchema(s.Name, s.Schema)
	if err != nil {
		return nil, err
	}
	c.schemas.Store(key, v)
	return v, nil
}

// followsSchema checks a structured answer against its schema; the error
// wraps council.ErrBadOutput (not ErrInvalid: another sample may do).
func followsSchema(v *events.Validator, name string, out council.Completion) error {
	if err := v.Validate([]byte(out.Content)); err != nil {
		// The validator's reason, without its ErrInvalid class: here the
		// answer is at fault, not the request.
		reason := strings.TrimPrefix(err.Error(), council.ErrInvalid.Error()+": ")
		return fmt.Errorf("%w: answer does not follow schema %q (finish reason %q): %s",
			council.ErrBadOutput, name, out.FinishReason, reason)
	}
	return nil
}

// usageOf maps the server's usage, with the prompt tokens it served from its
// prefix cache (usage.prompt_tokens_details.cached_tokens: vLLM with
// --enable-prompt-tokens-details, llama.cpp's server always).
func usageOf(u openai.Usage) council.Usage {
	out := council.Usage{
		PromptTokens:     u.PromptTokens,
		CompletionTokens: u.CompletionTokens,
		TotalTokens:      u.TotalTokens,
	}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedTokens = d.CachedTokens
	}
	return out
}

// backoff returns the wait before retry number attempt (from 0).
func (c *Client) backoff(attempt int) time.Duration {
	limit := c.cfg.backoffMax
	if attempt < 32 {
		if d := c.cfg.backoffBase << attempt; d > 0 && d < limit {
			limit = d
		}
	}
	return c.cfg.jitter(limit)
}

var (
	errEmpty     = errors.New("empty response")
	errTruncated = errors.New("stream ended without a finish reason")
)

// classify turns an attempt's error into the error to report: one wrapping
// council.ErrInvalid for an answer that retrying cannot change (4xx other
// than 408 and 429), a plain description otherwise (transient).
//
// Transient are: HTTP 5xx, 408 and 429; connection errors and timeouts
// (net.Error, the per-attempt deadline); a stream that broke off or carried
// an error event; an empty or undecodable answer.
func classify(err error) error {
	var (
		apiErr *openai.APIError
		reqErr *openai.RequestError
	)
	switch {
	case errors.As(err, &apiErr) && apiErr.HTTPStatusCode != 0:
		return statusError(apiErr.HTTPStatusCode, apiErr.Message)
	case errors.As(err, &reqErr) && reqErr.HTTPStatusCode != 0:
		return statusError(reqErr.HTTPStatusCode, bodyMessage(reqErr.Body))
	default:
		// net.Error (refused, reset, timeout), context.DeadlineExceeded of
		// the attempt, io.ErrUnexpectedEOF, errEmpty, errTruncated, a
		// mid-stream error event, a malformed body: all worth a retry.
		return err
	}
}

func statusError(code int, msg string) error {
	if permanentStatus(code) {
		return fmt.Errorf("%w: status %d: %s", council.ErrInvalid, code, msg)
	}
	return fmt.Errorf("status %d: %s", code, msg)
}

// permanentStatus reports whether an HTTP status means the same request
// will fail again (400 bad request, 401/403 auth, 404 unknown model or
// path, 422 validation, ...).
func permanentStatus(code int) bool {
	return code >= 400 && code < 500 &&
		code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// bodyMessage extracts a readable message from an error body that is not
// OpenAI's {"error":{...}} shape: vLLM's {"message":...}, FastAPI's
// {"detail":...}, or raw text.
func bodyMessage(body []byte) string {
	var v struct {
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
		Error   json.RawMessage `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &v) == nil {
		switch {
		case v.Message != "":
			msg = v.Message
		case len(v.Detail) > 0:
			msg = unquote(v.Detail)
		case len(v.Error) > 0:
			msg = unquote(v.Error)
		}
	}
	const limit = 500
	if len(msg) > limit {
		msg = msg[:limit] + "…"
	}
	if msg == "" {
		msg = "(empty body)"
	}
	return msg
}

func unquote(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}
