package council_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"council.dev/shared/council"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"invalid", council.ErrInvalid, false},
		{"not found", council.ErrNotFound, false},
		{"conflict", council.ErrConflict, false},
		{"unavailable", council.ErrUnavailable, true},
		{"bad output", council.ErrBadOutput, true},
		{"unclassified", io.ErrUnexpectedEOF, true},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped invalid", fmt.Errorf("generate p.0.a: %w", council.Invalidf("model %q not allowed", "x")), false},
		{"wrapped not found", fmt.Errorf("store: get: %w", council.ErrNotFound), false},
		{"wrapped conflict", fmt.Errorf("store: update: %w", council.ErrConflict), false},
		{"wrapped unavailable", fmt.Errorf("vllm: %w", council.Unavailablef("HTTP %d", 503)), true},
		{"joined permanent and transient", errors.Join(council.ErrUnavailable, council.ErrInvalid), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := council.Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestInvalidfAndUnavailablef(t *testing.T) {
	err := council.Invalidf("field %s is %d", "x", 3)
	if !errors.Is(err, council.ErrInvalid) || err.Error() != "invalid: field x is 3" {
		t.Errorf("Invalidf = %q (Is ErrInvalid %v), want %q", err, errors.Is(err, council.ErrInvalid), "invalid: field x is 3")
	}
	err = council.Unavailablef("HTTP %d", 503)
	if !errors.Is(err, council.ErrUnavailable) || err.Error() != "unavailable: HTTP 503" {
		t.Errorf("Unavailablef = %q, want %q wrapping ErrUnavailable", err, "unavailable: HTTP 503")
	}
}
