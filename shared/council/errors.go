package council

import (
	"errors"
	"fmt"
)

// Classified errors. Wrap them with %w and context; callers test them with
// errors.Is. Invalid, NotFound and Conflict are permanent: retrying the same
// input gives the same answer. Unavailable is transient: retrying later may
// succeed. The edges (HTTP receiver, JetStream consumer) map them to a status
// once, through Retryable and the HTTP mapping in the host package.
var (
	// ErrInvalid marks input that can never be processed (bad event, bad task).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound marks a reference to something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict marks a lost compare-and-set or an already existing entity.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable marks a dependency that failed in a way worth retrying
	// (connection refused, 5xx, 429, timeout).
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge marks a message larger than what it must go through takes
	// (the broker's maximum payload): permanent, it never gets smaller.
	ErrTooLarge = errors.New("too large")
)

// TooLargef returns an error that wraps ErrTooLarge with a formatted reason,
// which should name the limit.
func TooLargef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}

// Invalidf returns an error that wraps ErrInvalid with a formatted reason.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Unavailablef returns an error that wraps ErrUnavailable with a formatted reason.
func Unavailablef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// Retryable reports whether err is worth retrying. Classified permanent
// errors are not; ErrUnavailable is; an unclassified error is treated as
// transient, so that nothing is lost to an error nobody classified.
func Retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrTooLarge):
		return false
	default:
		return true
	}
}

// ErrBadOutput marks model output that does not have the required form
// (invalid JSON, a score out of range). It is transient: another sample may
// be fine.
var ErrBadOutput = errors.New("bad model output")
