// Package natserr classifies the errors of NATS and JetStream into council's
// classes, in one place for every adapter that talks to NATS (natsjs, legacy):
// permanent (council.ErrInvalid, or council.ErrConflict for a lost
// compare-and-set), transient (council.ErrUnavailable) and too large
// (council.ErrTooLarge). It decides by the JetStream API's error codes
// (nats-server's errors.json), not by messages.
//
// The rules, in order:
//   - a lost compare-and-set (jetstream.ErrKeyRevisionMismatch,
//     ErrKeyExists, "wrong last sequence" 10071 / 10164) is a conflict;
//   - a message or header over the server's limit (nats.ErrMaxPayload,
//     10054, 10097, 10199) is too large;
//   - an API error whose code is known transient (cluster, leader, raft,
//     offline, storage and memory resources: see [transientCodes]) or whose
//     status is 408, 429 or 503 is transient;
//   - any other API error is permanent: the server refused the request and
//     will refuse it again (status 4xx; and 500 with a known code such as
//     10052 "stream configuration update can not change storage type",
//     which the server answers with 500);
//   - a client-side refusal (a bad subject, stream, bucket or key name,
//     jetstream.ErrInvalid...) is permanent;
//   - every other error — connection closed or refused, no responders,
//     timeouts, context errors, and errors nobody classified — is transient:
//     retrying it costs a delay, calling it permanent could lose an event.
package natserr

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// Error codes of the JetStream API (nats-server's errors.json) that
// nats.go does not name.
const (
	codeClusterNotAssigned     jetstream.ErrorCode = 10007
	codeClusterNotAvailable    jetstream.ErrorCode = 10008
	codeClusterNotLeader       jetstream.ErrorCode = 10009
	codeClusterIncomplete      jetstream.ErrorCode = 10004
	codeInsufficientResources  jetstream.ErrorCode = 10023
	codeMemoryResources        jetstream.ErrorCode = 10028
	codeRaftGeneral            jetstream.ErrorCode = 10041
	codeStorageResources       jetstream.ErrorCode = 10047
	codeStreamAssignment       jetstream.ErrorCode = 10048
	codeStreamInvalidConfig    jetstream.ErrorCode = 10052
	codeStreamSequenceMismatch jetstream.ErrorCode = 10063
	codeTempStorageFailed      jetstream.ErrorCode = 10072
	codeStreamStoreFailed      jetstream.ErrorCode = 10077
	codeHeaderExceedsMaximum   jetstream.ErrorCode = 10097
	codeConsumerStoreFailed    jetstream.ErrorCode = 10104
	codeStreamOffline          jetstream.ErrorCode = 10118
	codeConsumerOffline        jetstream.ErrorCode = 10119
	codeExpectedLastSeqNotRdy  jetstream.ErrorCode = 10163
	codeTooManyRequests        jetstream.ErrorCode = 10167
	codeStreamOfflineReason    jetstream.ErrorCode = 10194
	codeConsumerOfflineReason  jetstream.ErrorCode = 10195
	codeAtomicBatchTooLarge    jetstream.ErrorCode = 10199
	codeSourceFlowStalled      jetstream.ErrorCode = 10228
)

// transientCodes are API error codes that say "not now" rather than "never":
// a cluster between leaders, a stream or consumer offline, a server short of
// storage or memory for the moment. The server answers several of them with
// status 500, which alone would read as a refusal.
var transientCodes = map[jetstream.ErrorCode]bool{
	codeClusterNotAssigned:                           true,
	codeClusterNotAvailable:                          true,
	codeClusterNotLeader:                             true,
	codeClusterIncomplete:                            true,
	codeInsufficientResources:                        true,
	codeMemoryResources:                              true,
	codeRaftGeneral:                                  true,
	codeStorageResources:                             true,
	codeStreamAssignment:                             true,
	codeStreamSequenceMismatch:                       true,
	codeTempStorageFailed:                            true,
	codeStreamStoreFailed:                            true,
	codeConsumerStoreFailed:                          true,
	codeStreamOffline:                                true,
	codeConsumerOffline:                              true,
	codeExpectedLastSeqNotRdy:                        true,
	codeTooManyRequests:                              true,
	codeStreamOfflineReason:                          true,
	codeConsumerOfflineReason:                        true,
	codeSourceFlowStalled:                            true,
	jetstream.JSErrCodeJetStreamNotEnabled:           true,
	jetstream.JSErrCodeJetStreamNotEnabledForAccount: true,
}

// tooLargeCodes are API error codes of a message over a limit.
var tooLargeCodes = map[jetstream.ErrorCode]bool{
	jetstream.JSErrCodeStreamMessageExceedsMaximum: true,
	codeHeaderExceedsMaximum:                       true,
	codeAtomicBatchTooLarge:                        true,
}

// clientRefusals are errors the client returns before asking the server,
// for input that will never do.
var clientRefusals = []error{
	nats.ErrBadSubject, nats.ErrBadSubscription, nats.ErrInvalidArg,
	jetstream.ErrInvalidStreamName, jetstream.ErrInvalidSubject, jetstream.ErrInvalidConsumerName,
	jetstream.ErrStreamNameRequired, jetstream.ErrInvalidBucketName, jetstream.ErrInvalidKey,
	jetstream.ErrInvalidStoreName, jetstream.ErrNameRequired, jetstream.ErrBucketRequired,
	jetstream.ErrHistoryTooLarge, jetstream.ErrInvalidOption, jetstream.ErrKeyValueConfigRequired,
	jetstream.ErrObjectConfigRequired, jetstream.ErrLimitMarkerTTLNotSupported,
}

// Class returns the council sentinel err belongs to: council.ErrConflict,
// council.ErrTooLarge, council.ErrInvalid or council.ErrUnavailable (see the
// package comment for the rules). It returns nil for a nil err.
func Class(err error) error {
	switch {
	case err == nil:
		return nil
	case IsConflict(err):
		return council.ErrConflict
	case errors.Is(err, nats.ErrMaxPayload):
		return council.ErrTooLarge
	}
	if apiErr := apiError(err); apiErr != nil {
		switch {
		case tooLargeCodes[apiErr.ErrorCode] || apiErr.Code == 413:
			return council.ErrTooLarge
		case transientCodes[apiErr.ErrorCode], apiErr.Code == 408, apiErr.Code == 429, apiErr.Code == 503:
			return council.ErrUnavailable
		default:
			return council.ErrInvalid
		}
	}
	for _, r := range clientRefusals {
		if errors.Is(err, r) {
			return council.ErrInvalid
		}
	}
	return council.ErrUnavailable
}

// Classify wraps err with its class (Class): the result matches both the
// council sentinel and err itself with errors.Is and errors.As. A nil err
// stays nil; an err already classified (it wraps a council sentinel) is
// returned as it is.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{council.ErrInvalid, council.ErrNotFound, council.ErrConflict, council.ErrUnavailable, council.ErrTooLarge} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", Class(err), err)
}

// IsConflict reports whether err is a lost compare-and-set: the client's
// ErrKeyRevisionMismatch or ErrKeyExists, or the server's "wrong last
// sequence" (10071, or 10164 on replicated streams) where a client did not
// map it.
func IsConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	apiErr := apiError(err)
	return apiErr != nil &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// apiError returns the JetStream API error err carries, or nil.
func apiError(err error) *jetstream.APIError {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return nil
}
