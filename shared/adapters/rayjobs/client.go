package rayjobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// maxBody caps what is read of one response (job logs included).
const maxBody = 64 << 20

// Client talks to the Jobs REST API of one Ray cluster. It is safe for
// concurrent use.
type Client struct {
	base       string // scheme://host[:port][/prefix], no trailing slash
	httpClient *http.Client
	headers    http.Header
	logger     *slog.Logger
	numCPUs    float64
	numGPUs    float64
	resources  map[string]float64
	runtimeEnv map[string]any
	baseEnv    map[string]string
	packages   packageCache
}

var _ council.JobRunner = (*Client)(nil)

// New returns a client of the Ray cluster whose dashboard answers at address,
// e.g. "http://127.0.0.1:8265". A path in address is kept as a prefix, for a
// dashboard behind a proxy. New does not contact the cluster; [Client.Version]
// does.
func New(address string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(address))
	if err != nil {
		return nil, fmt.Errorf("rayjobs: address %q: %s", redact.URL(address), redact.Text(err.Error()))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rayjobs: address %q: want http(s)://host:port", redact.URL(address))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("rayjobs: address %q: no query or fragment allowed", redact.URL(address))
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Client{
		base:       strings.TrimRight(u.String(), "/"),
		httpClient: o.httpClient,
		headers:    o.headers,
		logger:     o.logger,
		numCPUs:    o.numCPUs,
		numGPUs:    o.numGPUs,
		resources:  o.resources,
		runtimeEnv: o.runtimeEnv,
		baseEnv:    o.baseEnv,
	}, nil
}

// apiError is a non-2xx answer of the Jobs API, classified by kind (one of
// the council sentinels).
type apiError struct {
	method, path string
	status       int
	msg          string
	kind         error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %v (HTTP %d): %s", e.method, e.path, e.kind, e.status, e.msg)
}

func (e *apiError) Unwrap() error { return e.kind }

// agentStatus finds the status the head's job agent answered, which the head
// hides behind its own 500: "Request failed with status code 400: ...".
var agentStatus = regexp.MustCompile(`Request failed with status code (\d{3})`)

// Markers in Ray's answers that say more than the status code does.
const (
	// Ray 2.x, job_manager.submit_job; HTTP 500 wrapping the agent's 400.
	markerDuplicate = "Please use a different submission_id"
	// Ray 2.x, job_manager.delete_job; HTTP 500 wrapping the agent's 500.
	markerNotTerminal = "non-terminal state"
)

// classify maps a non-2xx answer to a council sentinel. The head answers
// 500 for any failure of its job agent, so the agent's own status, when the
// body carries it, decides.
func classify(status int, body string) error {
	switch {
	case strings.Contains(body, markerDuplicate), strings.Contains(body, markerNotTerminal):
		return council.ErrConflict
	}
	if status == http.StatusInternalServerError {
		if m := agentStatus.FindStringSubmatch(body); m != nil {
			status, _ = strconv.Atoi(m[1])
		}
	}
	switch {
	case status == http.StatusNotFound:
		return council.ErrNotFound
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return council.ErrUnavailable
	case status >= 400 && status < 500:
		return council.ErrInvalid
	default:
		return council.ErrUnavailable
	}
}

// rayMessage shortens Ray's error body to what a person needs: for a Python
// traceback, its last exception line; otherwise the body, cut at 1000 bytes.
func rayMessage(body string) string {
	body = strings.TrimSpace(body)
	if strings.Contains(body, "Traceback (most recent call last)") {
		lines := strings.Split(body, "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			l := lines[i]
			if t := strings.TrimSpace(l); t == "" || t == "." || l[0] == ' ' || l[0] == '\t' {
				continue
			}
			body = strings.TrimSpace(l)
			break
		}
	}
	if len(body) > 1000 {
		body = body[:1000] + "…"
	}
	if body == "" {
		body = "(empty body)"
	}
	return body
}

// do sends one request; in, when not nil, is sent as JSON (or as is when it
// is a []byte), and a 2xx answer is decoded into out when out is not nil.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	contentType := ""
	switch v := in.(type) {
	case nil:
	case []byte:
		body, contentType = bytes.NewReader(v), "application/octet-stream"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%w: encode request: %w", council.ErrInvalid, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", council.ErrInvalid, method, path, err)
	}
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.httpClient.Do(req)
	if err != nil {
		c.logger.DebugContext(ctx, "ray request", "method", method, "path", path,
			"error", err.Error(), "duration", time.Since(start))
		return fmt.Errorf("%w: %w", council.ErrUnavailable, err)
	}
	// The body is read below; a failure to close it loses nothing.
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	c.logger.DebugContext(ctx, "ray request", "method", method, "path", path,
		"status", resp.StatusCode, "duration", time.Since(start))
	if err != nil {
		return fmt.Errorf("%w: %s %s: read answer: %w", council.ErrUnavailable, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &apiError{
			method: method, path: path, status: resp.StatusCode,
			msg: rayMessage(string(data)), kind: classify(resp.StatusCode, string(data)),
		}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %s %s: decode answer: %w: %s",
			council.ErrUnavailable, method, path, err, rayMessage(string(data)))
	}
	return nil
}

// checkID rejects a submission id that cannot name a job in a URL path.
func checkID(id string) error {
	switch {
	case id == "":
		return council.Invalidf("empty submission id")
	case strings.ContainsAny(id, "/\\") || id == "." || id == "..":
		return council.Invalidf("submission id %q: must not contain a slash or be a dot path", id)
	}
	return nil
}

func jobPath(id string, suffix string) string {
	return "/api/jobs/" + url.PathEscape(id) + suffix
}

// isConflict reports whether err is a classified conflict of the Jobs API.
func isConflict(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && errors.Is(ae.kind, council.ErrConflict)
}
