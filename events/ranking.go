package events

import "council.dev/shared/council"

// DecodeRanking reads the answer of GET /deliberations/{id}/ranking: the
// data of the deliberation.completed.v1 event of a completed deliberation,
// ranked again (council.Rerank). Fields this build does not know are
// ignored, like DecodeDeliberationView; a body without a deliberation id
// is not such an answer. An error wraps council.ErrInvalid.
func DecodeRanking(b []byte) (Completed, error) {
	var v Completed
	if err := decodeReply("Completed", b, &v); err != nil {
		return Completed{}, err
	}
	if v.DeliberationID == "" {
		return Completed{}, replyError("Completed", council.Invalidf("deliberation_id is required"))
	}
	return v, nil
}
