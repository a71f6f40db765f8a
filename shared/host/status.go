package host

import (
	"errors"
	"net/http"

	"council.dev/events"
	"council.dev/shared/council"
)

// ErrRateLimited marks a dependency that answered 429 Too Many Requests. Wrap
// it together with council.ErrUnavailable (fmt.Errorf("...: %w: %w",
// council.ErrUnavailable, host.ErrRateLimited)) so that code which only knows
// the council sentinels still sees a transient error, and the HTTP edge
// answers 429 instead of 503.
var ErrRateLimited = errors.New("rate limited")

// StatusFor maps an error returned by a Handler (or met while reading the
// request) to the HTTP status the receiver answers. It is the one place where
// errors become statuses:
//
//	nil                                     200 (the receiver answers 202 when there is no reply)
//	*http.MaxBytesError, council.ErrTooLarge 413
//	council.ErrInvalid                      400
//	council.ErrNotFound, ErrConflict        422
//	ErrRateLimited                          429
//	council.ErrUnavailable                  503
//	anything else                           500
//
// Permanent classes win over transient ones when an error wraps both, in
// line with council.Retryable. 404 and 409 are never returned because
// Knative retries them.
func StatusFor(err error) int {
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &tooLarge), errors.Is(err, council.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, council.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, council.ErrNotFound), errors.Is(err, council.ErrConflict):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, council.ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// retryableStatus reports whether a sender following the Knative delivery
// contract retries an answer with this status.
func retryableStatus(status int) bool {
	return status == http.StatusNotFound || status == http.StatusRequestTimeout ||
		status == http.StatusConflict || status == http.StatusTooManyRequests || status >= 500
}

// writeError answers status with the JSON error reply of the contract
// (events.ErrorReply, encoded by events.EncodeReply).
func writeError(w http.ResponseWriter, status int, msg string) {
	b, err := events.EncodeReply(events.ErrorReply{Error: msg, Retryable: retryableStatus(status)})
	if err != nil { // cannot happen: a string and a bool always encode
		b = []byte(`{"error":"internal error","retryable":true}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
