package host_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/host"
)

func TestStatusFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, http.StatusOK},
		{"invalid", council.Invalidf("bad task"), http.StatusBadRequest},
		{"too large", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), http.StatusRequestEntityTooLarge},
		{"not found", fmt.Errorf("get: %w", council.ErrNotFound), http.StatusUnprocessableEntity},
		{"conflict", fmt.Errorf("create: %w", council.ErrConflict), http.StatusUnprocessableEntity},
		{"rate limited", fmt.Errorf("llm: %w: %w", council.ErrUnavailable, host.ErrRateLimited), http.StatusTooManyRequests},
		{"rate limited alone", host.ErrRateLimited, http.StatusTooManyRequests},
		{"unavailable", council.Unavailablef("nats down"), http.StatusServiceUnavailable},
		{"unclassified", errors.New("boom"), http.StatusInternalServerError},
		{"cancelled", context.Canceled, http.StatusInternalServerError},
		{"permanent wins over transient", fmt.Errorf("%w: %w", council.ErrInvalid, council.ErrUnavailable), http.StatusBadRequest},
		{"permanent wins over rate limit", fmt.Errorf("%w: %w", council.ErrConflict, host.ErrRateLimited), http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := host.StatusFor(tt.err)
			if got != tt.want {
				t.Errorf("StatusFor(%v) = %d, want %d", tt.err, got, tt.want)
			}
			if got == http.StatusNotFound || got == http.StatusConflict {
				t.Errorf("StatusFor(%v) = %d, which Knative retries", tt.err, got)
			}
		})
	}
}
