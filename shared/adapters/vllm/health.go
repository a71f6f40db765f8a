package vllm

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"council.dev/shared/council"
)

// Ping asks the server for its models (GET {base}/models), the cheapest
// call that shows it answers, and checks that it serves the default model.
// The call is bounded by ctx and by the client's per-call timeout, and is
// not retried. Errors wrap council.ErrUnavailable when the server cannot be
// reached or answers 5xx, and council.ErrInvalid when it refuses the call
// (4xx, a wrong API key) or does not serve the default model.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	list, err := c.api.ListModels(ctx)
	if err != nil {
		err = classify(err)
		if !council.Retryable(err) {
			return fmt.Errorf("vllm: ping: %w", err)
		}
		return fmt.Errorf("vllm: ping: %w: %w", council.ErrUnavailable, err)
	}
	ids := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	if !slices.Contains(ids, c.defaultModel) {
		return fmt.Errorf("vllm: ping: %w", council.Invalidf("the server does not serve model %q (it serves: %s)",
			c.defaultModel, strings.Join(ids, ", ")))
	}
	return nil
}
